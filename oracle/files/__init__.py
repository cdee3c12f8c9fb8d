"""Files: golden cases (``golden``: the schema, writing and reading them), the hardened readers every file
goes through (``readers``), candidates' gradient files (``grads``), and ``export`` (writing the built-in cases
after manual, autograd and finite differences agree)."""
