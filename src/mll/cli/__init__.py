"""The `mll` command line: parse, call one library function, print.

`main(argv)` is callable from tests; user errors exit 2 with one line. The parser lives in
`mll.cli.parser`; each command group's handlers in `data` (sdag, data), `hub`, `label` and `tasks`
(match, eval, solve), imported only when one of their commands runs, so `mll --help` stays fast.
"""

from __future__ import annotations

import os
import sys

from mll.cli.common import UserError
from mll.cli.parser import build_parser
from mll.env import apply_offline_defaults

__all__ = ["UserError", "build_parser", "main"]


# Exceptions that mean "the input or the setup is wrong", reported as one line.
def _user_errors() -> tuple[type[BaseException], ...]:
    # imported here, on the error path, so that `mll --help` does not load them; a failed command
    # has loaded most of these modules already
    from mll.data.images import ImageError
    from mll.data.validation import ValidationError
    from mll.data.wordnet import WordNetMissingError
    from mll.hub.cards import CardError
    from mll.labels.run import LabelingFailed
    from mll.solve.matching import MatchError

    return (
        UserError,
        CardError,
        MatchError,
        LabelingFailed,
        ValueError,
        KeyError,
        LookupError,  # a solution that is not registered (mll predict)
        FileNotFoundError,
        PermissionError,
        ImageError,
        ValidationError,
        WordNetMissingError,
        IsADirectoryError,
        NotADirectoryError,
    )


def _err_text(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(msg).split())


# the MLOps stack, installed by the `pipeline` extra (pyproject.toml): matching, solving, labeling
# and predicting need none of it; tracking, validation, serving and the flows do
PIPELINE_PACKAGES = ("prefect", "prefect_dask", "mlflow", "dvc", "great_expectations")


def main(argv: list[str] | None = None) -> int:
    apply_offline_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        print(f"mll: error: {_err_text(exc)}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in PIPELINE_PACKAGES:
            raise
        tracking_only = root == "mlflow" and hasattr(args, "no_track") and not getattr(args, "save", None)
        hint = " (or pass --no-track to skip the MLflow run)" if tracking_only else ""
        print(
            f"mll: error: this command needs {root}, part of the pipeline extra: pip install -e '.[pipeline]'{hint}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("mll: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mll hub list | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
