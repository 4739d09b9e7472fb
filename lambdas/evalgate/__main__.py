from evalgate.cli import console

console()
