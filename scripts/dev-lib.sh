# Shared by the benchmark scripts. Source it, then call
#
#   make_work
#
# for WORK, a temporary directory removed on exit (kept, and its path
# printed, with KEEP=1), which also stops the `drover dev` started by
#
#   start_dev DATA_DIR SLOTS LOG
#
# with $DROVER set: it starts `drover dev` with one worker of SLOTS slots
# on free loopback ports, waits until it is ready, and sets DEV (the pid),
# GRPC and HTTP (host:port).

make_work() {
    WORK=$(mktemp -d)
    DEV=
    trap cleanup_work EXIT
}

cleanup_work() {
    kill "$DEV" 2>/dev/null || true
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_dev() {
    GRPC=127.0.0.1:$(free_port)
    HTTP=127.0.0.1:$(free_port)
    "$DROVER" dev --data-dir "$1" --workers 1 --slots "$2" --listen "$GRPC" --http "$HTTP" 2> "$3" &
    DEV=$!
    for _ in $(seq 100); do
        curl -fs "http://$HTTP/readyz" > /dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "drover dev did not become ready; see $3" >&2
    return 1
}
