#!/usr/bin/env bash
# Create, update or delete the Code Engine cron subscription that runs bootfleet's
# cleanup (the Terraform provider has no resource for it). Called by code_engine.tf;
# needs the ibmcloud CLI with the code-engine plugin. Usage: cleanup-cron.sh apply|delete
#
#   apply  env: IBMCLOUD_API_KEY REGION RESOURCE_GROUP PROJECT_ID SUBSCRIPTION APP SCHEDULE CRON_SECRET
#   delete env: REGION RESOURCE_GROUP PROJECT_ID SUBSCRIPTION (and an ibmcloud login, or IBMCLOUD_API_KEY)
set -euo pipefail

action="${1:-}"
: "${REGION:?}" "${RESOURCE_GROUP:?}" "${PROJECT_ID:?}" "${SUBSCRIPTION:?}"

if ! command -v ibmcloud >/dev/null 2>&1; then
  echo "cleanup-cron.sh: the ibmcloud CLI is needed (https://cloud.ibm.com/docs/cli), with: ibmcloud plugin install code-engine" >&2
  exit 1
fi

if [ -n "${IBMCLOUD_API_KEY:-}" ]; then
  ibmcloud login -r "$REGION" -g "$RESOURCE_GROUP" -q >/dev/null
else
  ibmcloud target -r "$REGION" -g "$RESOURCE_GROUP" -q >/dev/null
fi
ibmcloud ce project select --id "$PROJECT_ID" -q >/dev/null

case "$action" in
  apply)
    : "${APP:?}" "${SCHEDULE:?}" "${CRON_SECRET:?}"
    data=$(printf '{"secret":"%s"}' "$CRON_SECRET")
    verb=create
    if ibmcloud ce subscription cron get --name "$SUBSCRIPTION" -q >/dev/null 2>&1; then
      verb=update
    fi
    ibmcloud ce subscription cron "$verb" --name "$SUBSCRIPTION" \
      --destination "$APP" --destination-type app --path /run \
      --schedule "$SCHEDULE" --time-zone UTC \
      --content-type application/json --data "$data" -q
    ;;
  delete)
    ibmcloud ce subscription cron delete --name "$SUBSCRIPTION" --force -q || true
    ;;
  *)
    echo "usage: cleanup-cron.sh apply|delete" >&2
    exit 64
    ;;
esac
