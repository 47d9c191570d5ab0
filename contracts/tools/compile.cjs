// Compile a Solidity source with the pinned solc-js; print the standard JSON output.
const solc = require('solc');
const fs = require('fs');
const [source, evmVersion] = process.argv.slice(2);
const input = {
  language: 'Solidity',
  sources: { [require('path').basename(source)]: { content: fs.readFileSync(source, 'utf8') } },
  settings: {
    evmVersion,
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
output.compilerVersion = solc.version();
process.stdout.write(JSON.stringify(output));
