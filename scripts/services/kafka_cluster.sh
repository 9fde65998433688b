# A three-node Apache Kafka 3.9 cluster in KRaft mode (each node broker and
# controller), for tests/kafka_cluster.rs: broker failures, leaderless
# partitions and SCRAM-SHA-512. Same Maven Central jars as kafka.sh (fetched
# by kafka_up if missing). Node N (1..3) listens on
#   127.0.0.1:5929N  PLAINTEXT
#   127.0.0.1:5930N  SASL_PLAINTEXT, SCRAM-SHA-512 (user runbook)
#   127.0.0.1:5931N  CONTROLLER
#   127.0.0.1:5932N  SSL (certificate for IP 127.0.0.1 from a CA made here)
# with 400 MB of heap. Idempotent: a node that listens is left alone, so
# `scripts/services.sh up kafka_cluster` also restarts one node a test
# stopped. Sourced by scripts/services.sh (after kafka.sh).

kcl_dir="$RUNBOOK_TEST_STATE/kafka_cluster"
kcl_scram_user=runbook
kcl_scram_password=runbook-scram-secret

kcl_port() { echo $((59290 + $1)); }
kcl_sasl_port() { echo $((59300 + $1)); }
kcl_controller_port() { echo $((59310 + $1)); }
kcl_tls_port() { echo $((59320 + $1)); }

# kcl_certs: a CA and a broker certificate for 127.0.0.1 (PEM, unencrypted
# PKCS#8 key, as Kafka's PEM keystore reads it), made once.
kcl_certs() {
  local d="$kcl_dir/tls"
  [ -f "$d/keystore.pem" ] && return 0
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=runbook test kafka CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' >"$d/ext.cnf"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 3650 -extfile "$d/ext.cnf" -out "$d/server.pem" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$d/server.key" -out "$d/server.p8"
  cat "$d/server.p8" "$d/server.pem" >"$d/keystore.pem"
}

kcl_props() {
  local n="$1" voters="1@127.0.0.1:$(kcl_controller_port 1),2@127.0.0.1:$(kcl_controller_port 2),3@127.0.0.1:$(kcl_controller_port 3)"
  cat <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(kcl_port "$n"),SASL_PLAINTEXT://127.0.0.1:$(kcl_sasl_port "$n"),SSL://127.0.0.1:$(kcl_tls_port "$n"),CONTROLLER://127.0.0.1:$(kcl_controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(kcl_port "$n"),SASL_PLAINTEXT://127.0.0.1:$(kcl_sasl_port "$n"),SSL://127.0.0.1:$(kcl_tls_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,CONTROLLER:PLAINTEXT
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$kcl_dir/tls/keystore.pem
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$kcl_dir/node$n/data
num.partitions=1
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=16777216
PROPS
}

# kcl_start N: start node N in the background if it is not listening.
kcl_start() {
  local n="$1" dir="$kcl_dir/node$1"
  port_open "$(kcl_port "$n")" && return 0
  mkdir -p "$dir/data"
  kcl_props "$n" >"$dir/server.properties"
  if [ ! -f "$dir/data/meta.properties" ]; then
    log "kafka_cluster: formatting node $n"
    kafka_java kafka.tools.StorageTool format -t "$(cat "$kcl_dir/cluster.id")" -c "$dir/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=$kcl_scram_user,password=$kcl_scram_password]" >/dev/null
  fi
  log "kafka_cluster: starting node $n on 127.0.0.1:$(kcl_port "$n")"
  nohup java -Xms64m -Xmx400m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$kafka_libs/*" \
    -Dlog4j.configuration="file:$kcl_dir/log4j.properties" \
    kafka.Kafka "$dir/server.properties" >>"$RUNBOOK_TEST_STATE/logs/kafka_cluster-$n.out" 2>&1 &
  echo "$!" >"$dir/kafka.pid"
}

kafka_cluster_up() {
  # The jars (and Java) come with the single-broker service.
  if [ ! -f "$kafka_libs/.complete" ]; then kafka_up; fi
  apt_install openssl
  mkdir -p "$kcl_dir"
  [ -f "$kcl_dir/cluster.id" ] || kafka_java kafka.tools.StorageTool random-uuid >"$kcl_dir/cluster.id"
  cat >"$kcl_dir/log4j.properties" <<LOG4J
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$RUNBOOK_TEST_STATE/logs/kafka_cluster.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
LOG4J
  kcl_certs
  local n
  # Nodes started before the TLS listener existed: all restart together
  # (one at a time would lose the quorum while each waits to register).
  if port_open "$(kcl_port 1)" && ! port_open "$(kcl_tls_port 1)"; then
    log "kafka_cluster: restarting every node for the TLS listener"
    kafka_cluster_down
  fi
  # All nodes at once: a quorum of two is needed before any serves.
  for n in 1 2 3; do kcl_start "$n"; done
  for n in 1 2 3; do
    wait_tcp "$(kcl_port "$n")" 180 || { log "kafka_cluster: node $n did not start; see $RUNBOOK_TEST_STATE/logs/kafka_cluster.log"; return 1; }
    wait_tcp "$(kcl_sasl_port "$n")" 60
    wait_tcp "$(kcl_tls_port "$n")" 60
  done
  cat >"$RUNBOOK_TEST_STATE/env/kafka_cluster.env" <<ENV
export RUNBOOK_TEST_KAFKA_CLUSTER_BROKERS=127.0.0.1:$(kcl_port 1),127.0.0.1:$(kcl_port 2),127.0.0.1:$(kcl_port 3)
export RUNBOOK_TEST_KAFKA_CLUSTER_SCRAM_BROKERS=127.0.0.1:$(kcl_sasl_port 1),127.0.0.1:$(kcl_sasl_port 2),127.0.0.1:$(kcl_sasl_port 3)
export RUNBOOK_TEST_KAFKA_CLUSTER_SCRAM_USER=$kcl_scram_user
export RUNBOOK_TEST_KAFKA_CLUSTER_SCRAM_PASSWORD=$kcl_scram_password
export RUNBOOK_TEST_KAFKA_CLUSTER_TLS_BROKERS=127.0.0.1:$(kcl_tls_port 1),127.0.0.1:$(kcl_tls_port 2),127.0.0.1:$(kcl_tls_port 3)
export RUNBOOK_TEST_KAFKA_CLUSTER_CA=$kcl_dir/tls/ca.pem
export RUNBOOK_TEST_KAFKA_CLUSTER_STATE=$kcl_dir
ENV
}

# kafka_cluster_down: stop every node.
kafka_cluster_down() {
  local n
  for n in 1 2 3; do
    stop_pidfile "$kcl_dir/node$n/kafka.pid"
  done
}
