#!/usr/bin/env bash
# Run a command with throwaway test services up (see scripts/services.sh); stop them afterwards,
# also when the command fails or is interrupted. Exit status is the command's.
#   scripts/with-services.sh .venv/bin/pytest tests/integration
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=services.sh
. "$here/services.sh"
trap services_down EXIT
trap 'exit 130' INT TERM
services_up
"$@"
