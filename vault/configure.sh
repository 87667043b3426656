#!/usr/bin/env bash
# Configures Vault for CoffeeBuddy with the vault CLI: the read-only policy (policy.hcl) and the
# Kubernetes auth role (kubernetes-role.json) bound to the ServiceAccount coffeebuddy in the
# namespace coffeebuddy, accepting only tokens issued for the audience "vault" (the pods' projected
# token, never their API-server token). Idempotent: run it again after changing either file.
#
# Needs: the vault CLI; VAULT_ADDR and a token allowed to write policies and auth roles
# (VAULT_TOKEN, or a `vault login` beforehand); the KV v2 engine mounted at secret/ and the
# Kubernetes auth method enabled and configured at auth/kubernetes/.
set -euo pipefail
cd "$(dirname "$0")"
: "${VAULT_ADDR:?set VAULT_ADDR to your Vault, e.g. https://vault.example:8200}"
command -v vault >/dev/null || { echo "configure.sh: the vault CLI is not on PATH" >&2; exit 1; }

vault policy write coffeebuddy policy.hcl
vault write auth/kubernetes/role/coffeebuddy @kubernetes-role.json

cat <<'NEXT'
Done. Store Slack's signing secret (read from standard input, so it stays out of shell history):
  vault kv put secret/coffeebuddy/slack signing_secret=-
the bot token (xoxb-…) beside it in the same secret:
  vault kv patch secret/coffeebuddy/slack bot_token=-
and the PostgreSQL role's password the same way:
  vault kv put secret/coffeebuddy/postgres password=-
NEXT
