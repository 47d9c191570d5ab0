"""Compile contracts/KnowledgeRegistry.sol with the pinned solc-js (npm, contracts/tools) and
write the committed artifact contracts/KnowledgeRegistry.json (ABI, bytecode, compiler).

    .venv/bin/python scripts/build_contracts.py          # rewrite the artifact
    .venv/bin/python scripts/build_contracts.py --check  # exit 1 if it differs from the source
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from _vectors import write_or_check

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "contracts" / "KnowledgeRegistry.sol"
ARTIFACT = ROOT / "contracts" / "KnowledgeRegistry.json"
TOOLS = ROOT / "contracts" / "tools"
EVM_VERSION = "cancun"  # solc 0.8.37 defaults to osaka, which anvil and eth-tester do not run


def compile_artifact() -> dict[str, Any]:
    result = subprocess.run(
        ["node", str(TOOLS / "compile.cjs"), str(SOURCE), EVM_VERSION],
        cwd=TOOLS,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    output = json.loads(result.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise SystemExit("solc: " + "\n".join(e["formattedMessage"] for e in errors))
    contract = output["contracts"][SOURCE.name]["KnowledgeRegistry"]
    return {
        "contractName": "KnowledgeRegistry",
        "compiler": output["compilerVersion"],
        "evmVersion": EVM_VERSION,
        "optimizer": {"enabled": True, "runs": 200},
        "sourceSha256": hashlib.sha256(SOURCE.read_bytes()).hexdigest(),
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
    }


def main() -> int:
    return write_or_check(ARTIFACT, compile_artifact, "build_contracts.py")


if __name__ == "__main__":
    raise SystemExit(main())
