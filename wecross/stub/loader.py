"""Finding stub plugins: IStubFactory objects in drop-in directories, discovered with twisted.plugin.

A plugin directory is a plain directory of modules (no ``__init__.py``), so that adding a chain type is dropping
one file next to ``embedded.py``. twisted.plugin only searches packages, so the directories are joined into one
synthetic package, :data:`DROPIN_PACKAGE`, that exists only in ``sys.modules``. twisted.plugin caches what each
module offers in a ``dropin.cache`` file in its directory (gitignored); a directory it cannot write to still works,
it is just scanned again each time.

The package name is fixed on purpose: a cache file remembers the module names it was written for, so the same
directory must always be seen under the same package.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import sysconfig
import types
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from twisted.plugin import getPlugins

import wecross
from wecross.chain.verifier import IVerifierFactory
from wecross.stub.interfaces import IStub, IStubFactory, StubSettings

DROPIN_PACKAGE = "wecross_stub_dropins"


class StubLoadError(Exception):
    """Stub plugins cannot be loaded or a stub cannot be built; the message says which and why."""


def default_plugin_dirs() -> list[Path]:
    """The repository's ``plugins/`` next to the wecross package, or the installed copy under ``share/``."""
    beside_package = Path(wecross.__file__).resolve().parent.parent / "plugins"
    if beside_package.is_dir():
        return [beside_package]
    installed = Path(sysconfig.get_path("data")) / "share" / "wecross" / "plugins"
    return [installed] if installed.is_dir() else []


def _dropin_package(dirs: Sequence[Path]) -> types.ModuleType:
    """(Re)build the synthetic package over ``dirs`` and forget modules loaded from directories no longer in it."""
    paths = [str(path) for path in dirs]
    package = sys.modules.get(DROPIN_PACKAGE)
    if package is None:
        spec = importlib.machinery.ModuleSpec(DROPIN_PACKAGE, None, is_package=True)
        package = importlib.util.module_from_spec(spec)
        sys.modules[DROPIN_PACKAGE] = package
    # twisted.python.modules wants a package to have an existing __init__.py as __file__ and uses it only to find
    # the sys.path entry the package came from; wecross's own __init__.py is such a file on such an entry.
    package.__file__ = wecross.__file__
    package.__path__ = paths
    if package.__spec__ is not None:
        package.__spec__.submodule_search_locations = paths
    for name in [name for name in sys.modules if name.startswith(DROPIN_PACKAGE + ".")]:
        module_file = getattr(sys.modules[name], "__file__", None)
        if module_file is None or str(Path(module_file).resolve().parent) not in paths:
            del sys.modules[name]
    return package


def _check_unique_module_names(dirs: Sequence[Path]) -> None:
    """A module name present in two directories would silently shadow the second: refuse it instead."""
    seen: dict[str, Path] = {}
    for directory in dirs:
        for file in sorted(directory.glob("*.py")):
            if file.stem == "__init__":
                raise StubLoadError(f"stub plugin directory {directory} must not be a package (remove {file.name})")
            if file.stem in seen:
                raise StubLoadError(f"stub plugin module {file.stem!r} is in both {seen[file.stem]} and {file}; "
                                    "rename one of them")
            seen[file.stem] = file


def _module_of(plugin: object) -> str:
    """The drop-in file that defines ``plugin`` (for error messages)."""
    for name, module in list(sys.modules.items()):
        if name.startswith(DROPIN_PACKAGE + ".") and any(value is plugin for value in vars(module).values()):
            return str(getattr(module, "__file__", name))
    return repr(plugin)


def discover(dirs: Iterable[Path] | None = None) -> dict[str, Any]:
    """Map stub_type -> IStubFactory provider found in ``dirs`` (default: :func:`default_plugin_dirs`).

    Missing directories are skipped; two factories for one stub_type are an error naming both modules.
    """
    wanted = default_plugin_dirs() if dirs is None else list(dirs)
    resolved: list[Path] = []
    for directory in wanted:
        path = Path(directory).expanduser().resolve()
        if path.is_dir() and path not in resolved:
            resolved.append(path)
    _check_unique_module_names(resolved)
    package = _dropin_package(resolved)
    factories: dict[str, Any] = {}
    where: dict[str, str] = {}
    with warnings.catch_warnings():
        # twisted.python.modules warns when a path entry is not in sys.path_importer_cache (e.g. the repo root
        # under an editable install); harmless for a package that only exists in sys.modules.
        warnings.simplefilter("ignore", UserWarning)
        found = list(getPlugins(IStubFactory, package))
    for factory in found:
        stub_type = getattr(factory, "stub_type", None)
        if not isinstance(stub_type, str) or not stub_type:
            raise StubLoadError(f"stub plugin {_module_of(factory)} has no stub_type string")
        module = _module_of(factory)
        if stub_type in factories:
            raise StubLoadError(f"stub type {stub_type!r} is provided twice: by {where[stub_type]} and by {module}")
        factories[stub_type] = factory
        where[stub_type] = module
    return factories


def verifiers_of(factories: Mapping[str, Any]) -> dict[str, Any]:
    """chain type -> IChainVerifier of every factory that provides IVerifierFactory (a chain type without one is
    "no verifier": its results are answered as not verified). Keyed by the verifier's own ``chain_type``, the value
    stubs of that type advertise, which TrustedResults looks up."""
    verifiers: dict[str, Any] = {}
    for stub_type, factory in sorted(factories.items()):
        if not IVerifierFactory.providedBy(factory):
            continue
        verifier = factory.verifier()
        chain_type = getattr(verifier, "chain_type", None)
        if not isinstance(chain_type, str) or not chain_type:
            raise StubLoadError(f"the verifier of stub type {stub_type!r} ({_module_of(factory)}) has no chain_type "
                                "string")
        if chain_type in verifiers:
            raise StubLoadError(f"chain type {chain_type!r} has two verifiers: {verifiers[chain_type]!r} and "
                                f"{verifier!r}")
        verifiers[chain_type] = verifier
    return verifiers


def build_stub(factories: Mapping[str, Any], settings: StubSettings, data_dir: Path) -> IStub:
    """Make (not start) the stub ``settings`` describes; StubLoadError for an unknown type or bad options."""
    factory = factories.get(settings.type)
    label = f"{settings.zone}.{settings.name}"
    if factory is None:
        known = ", ".join(sorted(factories)) or "none (no stub plugins found)"
        raise StubLoadError(f"stub {label}: unknown type {settings.type!r}; known types: {known}")
    try:
        return cast(IStub, factory.build(settings, data_dir))
    except ValueError as exc:
        message = str(exc)
        if not message.startswith(f"stub {label}"):
            message = f"stub {label} ({settings.type}): {message}"
        raise StubLoadError(message) from None
