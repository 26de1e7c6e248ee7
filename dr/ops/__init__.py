"""Orchestration: the steps of each job and their order, timing, reports.

backup, restore, drill, verify, rewrap and demo live here, above the leaf packages
(`dr.vault`, `dr.crypto`, `dr.storage`) and the drill runtimes (`dr.runtime`); the CLI
calls exactly one of them per command. What restore and drill share (fetching an
authenticated backup, checking a restored Vault against the catalog) lives in
`fetch` and `checks`, which import nothing else from this package.
"""
