"""Compile contracts/KnowledgeRegistry.sol with the pinned solc-js (npm, contracts/tools) and
write the committed artifact contracts/KnowledgeRegistry.json (ABI, bytecode, compiler).

    .venv/bin/python scripts/build_contracts.py          # rewrite the artifact
    .venv/bin/python scripts/build_contracts.py --check  # exit 1 if it differs from the source
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = json.dumps(compile_artifact(), indent=2) + "\n"
    if args.check:
        if not ARTIFACT.exists() or ARTIFACT.read_text() != text:
            sys.stderr.write(f"{ARTIFACT} is stale: run scripts/build_contracts.py\n")
            return 1
        return 0
    ARTIFACT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
