# The benchmark setups and the service's environment, shared by scripts/bench.sh and
# scripts/service_instructions.sh (sourced, not run), so both measure the same service.

# The environment of one setup.
setup_env() {
  case $1 in
    bare) echo PYROSCOPE_ENABLED=false OTEL_SDK_DISABLED=true ;;
    traces) echo PYROSCOPE_ENABLED=false ;;
    # Traces made but not sampled: tracing-opentelemetry's work alone, nothing recorded.
    unsampled) echo PYROSCOPE_ENABLED=false OTEL_TRACES_SAMPLER=always_off ;;
    # Traces recorded, encoded and queued, sent nowhere (a refused port: the export thread
    # mostly waits out its retry backoff): all of the traces' cost but the export runs.
    unexported) echo PYROSCOPE_ENABLED=false OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:9/v1/traces ;;
    thread-tags|off|sampler) echo RIDESHARE_PROFILE_LABELS="$1" ;;
    *) echo "${0##*/}: unknown setup $1" >&2; exit 1 ;;
  esac
}

# The service's environment in every setup, from the caller's APP, HTTP, OTLP, PROTOCOL, RATE
# and WORK_SCALE. RUST_LOG's INFO directive is for the span queue's totals, logged at shutdown.
service_env() {
  echo RIDESHARE_LISTEN_ADDR="$APP" RIDESHARE_WORK_SCALE="$WORK_SCALE" \
    RUST_LOG=warn,rideshare::telemetry::span_queue=info \
    PYROSCOPE_SERVER_ADDRESS="http://$HTTP" PYROSCOPE_SAMPLE_RATE="$RATE" PYROSCOPE_UPLOAD_INTERVAL=5s \
    OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP" OTEL_EXPORTER_OTLP_PROTOCOL="$PROTOCOL"
}
