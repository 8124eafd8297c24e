# Shared by the benchmark scripts: start `drover dev` on free loopback
# ports and wait until it is ready. Source it, then call
#
#   start_dev DATA_DIR SLOTS LOG
#
# with $DROVER set; it sets DEV (the pid), GRPC and HTTP (host:port).

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
