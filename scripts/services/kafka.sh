# Apache Kafka 3.9 in KRaft mode, one combined broker+controller node, on
# 127.0.0.1:59092 (broker), 127.0.0.1:59093 (SASL/PLAIN listener) and
# 127.0.0.1:59095 (controller), for
# tests/kafka.rs. The jars come from Maven Central (scripts/services/kafka/pom.xml)
# and are cached under ~/.cache/runbook-exporter/kafka; Java 17 runs them.
# Also installs Java 17 and Maven, and a C toolchain (ring, under rustls).
# Sourced by scripts/services.sh.

kafka_version=3.9.1
kafka_cache="${HOME}/.cache/runbook-exporter/kafka"
kafka_libs="$kafka_cache/libs-$kafka_version"
kafka_dir="$RUNBOOK_TEST_STATE/kafka"
kafka_port=59092
kafka_controller_port=59095
# A SASL/PLAIN listener for the authentication tests.
kafka_sasl_port=59093
kafka_sasl_user=runbook
kafka_sasl_password=runbook-kafka-secret

# kafka_java CLASS ARGS...: run a class from the cached jars.
kafka_java() {
  java -Xms64m -Xmx512m -cp "$kafka_libs/*" -Dlog4j.configuration="file:$kafka_dir/log4j.properties" "$@"
}

kafka_up() {
  apt_install build-essential openjdk-17-jre-headless maven
  if [ ! -f "$kafka_libs/.complete" ]; then
    log "kafka: fetching Apache Kafka $kafka_version jars from Maven Central"
    mkdir -p "$kafka_libs"
    mvn -q -B -Dmaven.repo.local="$kafka_cache/m2" -f "$here/services/kafka/pom.xml" \
      dependency:copy-dependencies -DoutputDirectory="$kafka_libs"
    touch "$kafka_libs/.complete"
  fi
  mkdir -p "$kafka_dir/data"
  cat >"$kafka_dir/log4j.properties" <<LOG4J
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$RUNBOOK_TEST_STATE/logs/kafka.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
LOG4J
  if ! port_open "$kafka_port"; then
    cat >"$kafka_dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$kafka_controller_port
listeners=PLAINTEXT://127.0.0.1:$kafka_port,SASL_PLAINTEXT://127.0.0.1:$kafka_sasl_port,CONTROLLER://127.0.0.1:$kafka_controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port,SASL_PLAINTEXT://127.0.0.1:$kafka_sasl_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$kafka_sasl_user="$kafka_sasl_password";
log.dirs=$kafka_dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=16777216
PROPS
    if [ ! -f "$kafka_dir/data/meta.properties" ]; then
      log "kafka: formatting storage"
      kafka_java kafka.tools.StorageTool format -t "$(kafka_java kafka.tools.StorageTool random-uuid)" \
        -c "$kafka_dir/server.properties" >/dev/null
    fi
    # The fixed ports lie in Linux's ephemeral range, so an outgoing
    # connection can briefly hold one and the broker exits on "Address
    # already in use": try a few times.
    local attempt pid i
    for attempt in 1 2 3; do
      log "kafka: starting on 127.0.0.1:$kafka_port (attempt $attempt)"
      nohup java -Xms128m -Xmx768m -XX:+UseSerialGC -cp "$kafka_libs/*" \
        -Dlog4j.configuration="file:$kafka_dir/log4j.properties" \
        kafka.Kafka "$kafka_dir/server.properties" >>"$RUNBOOK_TEST_STATE/logs/kafka.out" 2>&1 &
      pid=$!
      echo "$pid" >"$kafka_dir/kafka.pid"
      for ((i = 0; i < 1800; i++)); do
        port_open "$kafka_port" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      port_open "$kafka_port" && break
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      log "kafka: the broker did not start; see $RUNBOOK_TEST_STATE/logs/kafka.log"
    done
    port_open "$kafka_port" || return 1
    wait_tcp "$kafka_sasl_port" 30
  fi
  cat >"$RUNBOOK_TEST_STATE/env/kafka.env" <<ENV
export RUNBOOK_TEST_KAFKA_BROKERS=127.0.0.1:$kafka_port
export RUNBOOK_TEST_KAFKA_SASL_BROKERS=127.0.0.1:$kafka_sasl_port
export RUNBOOK_TEST_KAFKA_SASL_USER=$kafka_sasl_user
export RUNBOOK_TEST_KAFKA_SASL_PASSWORD=$kafka_sasl_password
export RUNBOOK_TEST_KAFKA_LIBS=$kafka_libs
export RUNBOOK_TEST_KAFKA_PID_FILE=$kafka_dir/kafka.pid
ENV
}

kafka_down() {
  stop_pidfile "$kafka_dir/kafka.pid"
}
