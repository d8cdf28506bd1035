"""The `jobnode` command line: `main` builds the parser and dispatches; one module per group of
commands (`serve`, `dev`, `submit`, `jobs`, `status`, `session` for login, `users`, `certs`),
with what they share in `connection`, `tokens`, `output`, `arguments` and `usage`."""
