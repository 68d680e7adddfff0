#!/bin/sh
# Container entrypoint: titand with container defaults; any argument given overrides them (absl flags:
# the last occurrence of a flag wins). The bundled TPTT adapter is used when the image has one and no
# --tptt was given.
set -eu
TPTT=""
case " $* " in
  *" --tptt"*) ;;
  *) [ -f "${TITAND_ADAPTER_DIR:-}/tptt_config.json" ] && TPTT="--tptt=${TITAND_ADAPTER_DIR}" ;;
esac
exec /opt/titand/bin/titand \
  --model=smollm2-135m --host=0.0.0.0 --port=50051 --metrics-port=9464 --metrics-host=0.0.0.0 \
  --session-dir=/var/lib/titand/sessions ${TPTT} "$@"
