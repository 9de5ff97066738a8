"""`python -m ecgtl ...`: the `ecgtl` command, also as torchrun starts it (`torchrun --nproc_per_node 2 -m ecgtl
finetune ...`)."""

from ecgtl.cli import main

if __name__ == "__main__":
    main()
