#!/usr/bin/env bash
# Create, update or delete the Code Engine cron subscription that runs bootfleet's
# cleanup job (the Terraform provider has no resource for subscriptions). Called by
# code_engine.tf; needs the ibmcloud CLI with the code-engine plugin.
# Usage: cleanup-cron.sh apply|delete
#
#   apply  env: REGION RESOURCE_GROUP PROJECT_ID SUBSCRIPTION JOB SCHEDULE, and IBMCLOUD_API_KEY
#   delete env: REGION RESOURCE_GROUP PROJECT_ID SUBSCRIPTION, and IBMCLOUD_API_KEY (or IC_API_KEY)
#               from the environment terraform runs in, or an `ibmcloud login` session
#
# No secret goes on a command line: the subscription only starts the job, and the job
# reads the cron secret from its own environment; `ibmcloud login` reads the API key
# from IBMCLOUD_API_KEY itself.
set -euo pipefail

action="${1:-}"
case "$action" in
  apply | delete) ;;
  *)
    echo "usage: cleanup-cron.sh apply|delete" >&2
    exit 64
    ;;
esac
: "${REGION:?}" "${RESOURCE_GROUP:?}" "${PROJECT_ID:?}" "${SUBSCRIPTION:?}"

if ! command -v ibmcloud >/dev/null 2>&1; then
  echo "cleanup-cron.sh: the ibmcloud CLI is needed (https://cloud.ibm.com/docs/cli), with: ibmcloud plugin install code-engine" >&2
  exit 1
fi

if [ -z "${IBMCLOUD_API_KEY:-}" ] && [ -n "${IC_API_KEY:-}" ]; then
  export IBMCLOUD_API_KEY="$IC_API_KEY"
fi
if [ -n "${IBMCLOUD_API_KEY:-}" ]; then
  ibmcloud login -r "$REGION" -g "$RESOURCE_GROUP" -q >/dev/null # the key comes from IBMCLOUD_API_KEY
elif ! ibmcloud target -r "$REGION" -g "$RESOURCE_GROUP" -q >/dev/null 2>&1; then
  echo "cleanup-cron.sh: no IBM Cloud login: export IBMCLOUD_API_KEY (terraform cannot hand a variable to a destroy-time step), or run ibmcloud login first" >&2
  exit 1
fi
ibmcloud ce project select --id "$PROJECT_ID" -q >/dev/null

case "$action" in
  apply)
    : "${JOB:?}" "${SCHEDULE:?}"
    verb=create
    if ibmcloud ce subscription cron get --name "$SUBSCRIPTION" -q >/dev/null 2>&1; then
      verb=update
    fi
    ibmcloud ce subscription cron "$verb" --name "$SUBSCRIPTION" \
      --destination "$JOB" --destination-type job \
      --schedule "$SCHEDULE" --time-zone UTC -q
    ;;
  delete)
    ibmcloud ce subscription cron delete --name "$SUBSCRIPTION" --force -q || true
    ;;
esac
