# dr-backup, on the SOURCE cluster (docs/vault-policy.md): the raft snapshot and a
# catalog of every path (list and metadata only). No line grants a secret value: kv-v1
# values need `read` on <mount>/<path>, kv-v2 values `read` on <mount>/data/<path>, and
# neither is here (tests/unit/test_vault_policies.py holds that). Anyone who can take a
# raft snapshot holds everything in Vault in barrier-encrypted form: guard this policy
# like root.

# the raft snapshot (the only privileged call)
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}

# the catalog: mounts, auth methods, policy names
path "sys/mounts" {
  capabilities = ["read"]
}

path "sys/auth" {
  capabilities = ["read"]
}

path "sys/policies/acl" {
  capabilities = ["list"]
}

# kv-v2 mounts, every one (also mounts added later): list and read METADATA only
path "+/metadata/*" {
  capabilities = ["list", "read"]
}

path "+/metadata" {
  capabilities = ["list"]
}

# kv-v1 mounts, every one: LIST only, never read. `+/*` with list also lists key names
# elsewhere (names, not values); name each kv-v1 mount instead (`legacy/*`) if that is
# too wide.
path "+/*" {
  capabilities = ["list"]
}

path "+" {
  capabilities = ["list"]
}

# namespaces (OpenBao 2.3+, Vault Enterprise): one `scan` lists the whole tree; on a
# server without namespaces this does nothing. Child namespaces need the per-depth
# lines of docs/vault-policy.md ("Namespaces").
path "sys/namespaces" {
  capabilities = ["list", "scan"]
}
