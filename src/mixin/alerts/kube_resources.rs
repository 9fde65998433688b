//! The Kubernetes alerts on resource use and how containers die: memory
//! near its limit (the guides' OOMKilled precursor), CPU at its limit (their
//! throttling symptom), and containers exiting with 101 (a Rust panic, the
//! guides' "Application Panics").

use super::{Alert, Class, Fixture, Group, Priority, Runbook};

pub(super) const ALERTS: &[Alert] = &[
    Alert {
        name: "RunbookKubeContainerMemoryNearLimit",
        group: Group::Kubernetes,
        // The OOM kill's precursor: degraded soon, not yet down.
        priority: Priority::P2,
        team: None,
        class: Class::Symptom,
        expr: "runbook_kubernetes_container_memory_working_set_bytes{%E%} / runbook_kubernetes_container_memory_limit_bytes{%E%} > %T%",
        summary: "A container's memory is close to its limit.",
        description: "Container {{ $labels.k8s_container }} of pod {{ $labels.k8s_namespace }}/{{ $labels.k8s_pod }} uses {{ $value | humanizePercentage }} of its memory limit.",
        explain: "working-set memory over the memory limit, above the threshold (from metrics.k8s.io)",
        runbook: Runbook {
            meaning: "The container's working set (what the kernel counts against the cgroup limit) is close to its memory limit; at the limit the kernel OOM-kills it.",
            impact: "None yet; an OOM kill drops the container's in-flight requests and restarts it.",
            diagnose: "```sh\nkubectl -n NAMESPACE top pod POD --containers\nkubectl -n NAMESPACE get pod POD -o jsonpath='{.spec.containers[*].resources}'\nkubectl -n NAMESPACE describe pod POD | grep -A3 'Last State'   # earlier OOMKilled?\n```\nA steady climb since the last release is a leak; a plateau just under the limit is a limit set too low.",
            fix: "- Raise the memory limit (and request) if the workload needs it.\n- Otherwise find the leak: a heap profile, or roll back the release that started the climb.",
            escalate: "Escalate to the owning team; see RunbookKubeContainerOOMKilled once it is killed.",
        },
        test: Fixture {
            firing: &[
                ("runbook_kubernetes_container_memory_working_set_bytes{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"}", "500x40"),
                ("runbook_kubernetes_container_memory_limit_bytes{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"}", "512x40"),
            ],
            delay: 0,
            labels: "%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"",
            value: "97.66%",
            quiet: &[
                ("runbook_kubernetes_container_memory_working_set_bytes{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"}", "200x40"),
                ("runbook_kubernetes_container_memory_limit_bytes{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"}", "512x40"),
            ],
        },
    },
    Alert {
        name: "RunbookKubeContainerCpuThrottled",
        group: Group::Kubernetes,
        priority: Priority::P2,
        team: None,
        class: Class::Symptom,
        expr: "runbook_kubernetes_container_cpu_usage_cores{%E%} / runbook_kubernetes_container_cpu_limit_cores{%E%} > %T%",
        summary: "A container runs at its CPU limit.",
        description: "Container {{ $labels.k8s_container }} of pod {{ $labels.k8s_namespace }}/{{ $labels.k8s_pod }} uses {{ $value | humanizePercentage }} of its CPU limit.",
        explain: "CPU use over the CPU limit, above the threshold (from metrics.k8s.io): the CFS quota throttles it",
        runbook: Runbook {
            meaning: "The container uses about all the CPU its limit allows, so the kernel's CFS quota throttles it: the guides' throttling symptom.",
            impact: "Latency rises (requests wait for the next CPU period); health probes may time out and restart the pod.",
            diagnose: "```sh\nkubectl -n NAMESPACE top pod POD --containers\nkubectl -n NAMESPACE get pod POD -o jsonpath='{.spec.containers[*].resources.limits.cpu}'\n# on the node: nr_throttled and throttled_usec grow\nkubectl -n NAMESPACE exec POD -- cat /sys/fs/cgroup/cpu.stat\n```",
            fix: "- Raise the CPU limit, or remove it and keep the request (many teams run without CPU limits).\n- Scale out (`kubectl -n NAMESPACE scale deployment/NAME --replicas=N`) if the load is real.",
            escalate: "Escalate to the owning team when latency SLOs are burning.",
        },
        test: Fixture {
            firing: &[
                ("runbook_kubernetes_container_cpu_usage_cores{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"}", "0.49x40"),
                ("runbook_kubernetes_container_cpu_limit_cores{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"}", "0.5x40"),
            ],
            delay: 0,
            labels: "%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"",
            value: "98%",
            quiet: &[
                ("runbook_kubernetes_container_cpu_usage_cores{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"}", "0.1x40"),
                ("runbook_kubernetes_container_cpu_limit_cores{%L%,check=\"kube\",k8s_namespace=\"shop\",k8s_pod=\"api-1\",k8s_container=\"api\"}", "0.5x40"),
            ],
        },
    },
    Alert {
        name: "RunbookKubeContainerPanicking",
        group: Group::Kubernetes,
        // Application panics take a service down: P1.
        priority: Priority::P1,
        team: None,
        class: Class::Symptom,
        expr: "increase(runbook_kubernetes_container_exit_codes_total{%E%, exit_code=\"101\"}[10m]) > %T%",
        summary: "Containers exit with a Rust panic (exit code 101).",
        description: "Containers in namespace {{ $labels.k8s_namespace }} exited with code 101 (a panic) {{ $value | humanize }} times in the last 10 minutes.",
        explain: "`increase(runbook_kubernetes_container_exit_codes_total{exit_code=\"101\"}[10m])` above the threshold",
        runbook: Runbook {
            meaning: "A Rust binary panicked and exited with code 101: the guides' \"Application Panics\".",
            impact: "Every panic drops the container's in-flight requests; repeated panics become a crash loop.",
            diagnose: "```sh\nkubectl -n NAMESPACE get pods   # which pods restart\nkubectl -n NAMESPACE logs POD --previous | grep -B2 -A20 'panicked at'\nkubectl -n NAMESPACE describe pod POD | grep -A4 'Last State'   # Exit Code: 101\n```\nThe line after `panicked at` names the file and line; `RUST_BACKTRACE=1` in the pod's env gives the stack.",
            fix: "- A bad release: `kubectl -n NAMESPACE rollout undo deployment/NAME`.\n- Bad input or config that reaches an `unwrap`: fix the input, then the code.",
            escalate: "P0 while users see errors: page the owning team with the panic message.",
        },
        test: Fixture {
            firing: &[("runbook_kubernetes_container_exit_codes_total{%L%,check=\"kube\",k8s_namespace=\"shop\",exit_code=\"101\"}", "0x5 1x25")],
            delay: 5,
            labels: "%L%,check=\"kube\",k8s_namespace=\"shop\",exit_code=\"101\"",
            value: "1",
            quiet: &[("runbook_kubernetes_container_exit_codes_total{%L%,check=\"kube\",k8s_namespace=\"shop\",exit_code=\"101\"}", "4x30")],
        },
    },
];
