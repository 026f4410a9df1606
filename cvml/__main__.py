"""`python -m cvml` — the same CLI; `accelerate launch -m cvml finetune ...` uses this."""

from cvml.cli.main import main

if __name__ == "__main__":
    main()
