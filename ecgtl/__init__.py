"""ecgtl: transfer learning on 12-lead ECGs (PTB-XL -> G12EC), tracked with MLflow."""

__version__ = "0.1.0"
