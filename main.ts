// Entry point: subcommand dispatch only.
console.error("phalanx: not built yet");
process.exit(2);
