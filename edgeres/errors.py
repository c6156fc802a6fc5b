"""One exception family. Library code raises these; only the CLI turns them into exit codes."""


class EdgeresError(Exception):
    """A user-facing problem: the message is one line naming what was wrong and what is accepted."""


class DataError(EdgeresError):
    """A data folder or file that cannot be used."""


class CheckpointError(EdgeresError):
    """A checkpoint that cannot be loaded or does not match what was asked."""


class MissingDependencyError(EdgeresError):
    """An optional package is not installed; the message names the pip extra that provides it."""


def require(module: str, extra: str):
    """Import an optional module, or raise one clear error naming the extra that installs it.

    Args:
        module: importable module name, e.g. "torch" or "tensorrt".
        extra: the edgeres extra (or instruction) that provides it.

    Returns:
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"'{module}' is not installed ({exc}); install it with: pip install 'edgeres[{extra}]'"
        ) from None
