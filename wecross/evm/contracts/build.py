"""Compile the built-in contracts into ``build/<Name>.json`` ({"abi": [...], "bytecode": "0x..."}).

The JSON files are committed so a router needs no Solidity compiler at run time; run this (``make contracts``)
after editing a ``.sol`` file. It uses the solcjs from the repository's ``node_modules`` (``npm install``).

Standard-JSON mode rather than ``solcjs --bin --abi --optimize`` only to pin what those flags leave to the
compiler's defaults: the EVM version (``paris``: no PUSH0 or MCOPY, so the bytecode also runs on nodes that lag
behind mainnet forks, such as FISCO BCOS 3 in web3 mode) and the optimizer runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
BUILD_DIR = HERE / "build"
CONTRACTS = ("HelloWeCross", "AssetLedger")
#: Sources the contracts import (compiled with them, no artifact of their own).
LIBRARIES = ("TxBook",)
EVM_VERSION = "paris"
OPTIMIZER_RUNS = 200


def find_solcjs() -> Path:
    solcjs = REPO / "node_modules" / ".bin" / "solcjs"
    if not solcjs.is_file():
        raise SystemExit(f"{solcjs} not found: run `npm install` in {REPO} first")
    return solcjs


def compile_all(solcjs: Path) -> dict[str, dict[str, Any]]:
    """One compiler run for all contracts; {name: {"abi", "bytecode", "compiler"}} or SystemExit with the errors."""
    request = {
        "language": "Solidity",
        "sources": {f"{name}.sol": {"content": (HERE / f"{name}.sol").read_text()}
                    for name in (*CONTRACTS, *LIBRARIES)},
        "settings": {
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "evmVersion": EVM_VERSION,
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    version = subprocess.run([str(solcjs), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    done = subprocess.run([str(solcjs), "--standard-json"], input=json.dumps(request), capture_output=True,
                          text=True, check=False)
    try:
        answer = json.loads(done.stdout[done.stdout.index("{"):])  # solcjs may print a warning line first
    except ValueError:
        raise SystemExit(f"solcjs failed (exit {done.returncode}): {done.stderr or done.stdout}") from None
    errors = [e for e in answer.get("errors", []) if e.get("severity") == "error"]
    for problem in answer.get("errors", []):
        print(problem.get("formattedMessage", problem.get("message")), file=sys.stderr)
    if errors:
        raise SystemExit(f"solcjs reported {len(errors)} error(s)")
    built: dict[str, dict[str, Any]] = {}
    for name in CONTRACTS:
        output = answer["contracts"][f"{name}.sol"][name]
        built[name] = {
            "abi": output["abi"],
            "bytecode": "0x" + output["evm"]["bytecode"]["object"],
            "compiler": f"solcjs {version} --optimize-runs {OPTIMIZER_RUNS} --evm-version {EVM_VERSION}",
        }
    return built


def main() -> None:
    BUILD_DIR.mkdir(exist_ok=True)
    for name, artifact in compile_all(find_solcjs()).items():
        path = BUILD_DIR / f"{name}.json"
        path.write_text(json.dumps(artifact, indent=1) + "\n")
        print(f"wrote {path.relative_to(REPO)} ({(len(artifact['bytecode']) - 2) // 2} bytes of init code)")


if __name__ == "__main__":
    main()
