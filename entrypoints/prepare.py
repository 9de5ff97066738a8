"""MLproject entry point `prepare`: parse MLflow parameters, build the cache for a dataset spec."""

import argparse

from ecgtl.data.cache import PrepareConfig, prepare

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--fs", type=float, default=100.0)
    parser.add_argument("--length-s", type=float, default=10.0)
    parser.add_argument("--label-set", default="shared18")
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args()
    prepared = prepare(PrepareConfig(spec=args.spec, fs=args.fs, length_s=args.length_s,
                                     label_set=args.label_set, split_seed=args.split_seed))
    print(f"cache {prepared.path}")
