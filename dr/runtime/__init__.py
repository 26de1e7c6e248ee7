"""Drill runtimes: where a throwaway Vault runs (a local process or a container).

Below the orchestration (`dr.ops.drill`), above `dr.vault`: a runtime starts an
isolated, uninitialized server and says how to reach it (`dr.vault.endpoint.Endpoint`).
"""
