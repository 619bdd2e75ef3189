// `metalsync daemon`: ordered start-up, then the level-triggered loop
// (poll Git, observe Ironic, plan, execute, record), a control socket, and
// signals handled through the loop.

#include "daemon/daemon_run.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <future>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "daemon/control_server.hpp"
#include "daemon/daemon_config.hpp"
#include "daemon/event_names.hpp"
#include "daemon/executor.hpp"
#include "daemon/kube_commands.hpp"
#include "daemon/kube_worker.hpp"
#include "daemon/logging.hpp"
#include "daemon/metrics.hpp"
#include "daemon/metrics_server.hpp"
#include "daemon/revision_intake.hpp"
#include "reconcilers/credentials.hpp"
#include "reconcilers/ironic/ironic_client.hpp"
#include "reconcilers/inspection.hpp"
#include "reconcilers/ironic/node_action_runner.hpp"
#include "reconcilers/node_memory_conversion.hpp"
#include "reconcilers/node_planner.hpp"
#include "reconcilers/openstack/clouds_config.hpp"
#include "sources/git_remote_url.hpp"
#include "sources/git_worker_process.hpp"
#include "store/store.hpp"

namespace metalsync {

namespace {

double unix_now()
{
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::optional<IronicConnection> ironic_connection(const DaemonConfig& cfg, std::string& error)
{
    IronicConnection connection;
    if (!cfg.ironic.endpoint.empty()) {
        connection.endpoint = cfg.ironic.endpoint;
    } else {
        std::optional<std::filesystem::path> file;
        if (!cfg.ironic.clouds_file.empty()) file = cfg.ironic.clouds_file;
        std::string cloud_name = cfg.ironic.cloud;
        if (const char* os_cloud = std::getenv("OS_CLOUD"); os_cloud != nullptr && *os_cloud != '\0') {
            cloud_name = os_cloud;
        }
        if (cloud_name.empty()) {
            error = "no Ironic configured: set ironic.endpoint or ironic.cloud in " + cfg.source_file.string();
            return std::nullopt;
        }
        auto cloud = load_cloud_config(file, cloud_name);
        if (!cloud) {
            error = cloud.error();
            return std::nullopt;
        }
        connection = ironic_connection_from_cloud(*cloud);
    }
    if (!cfg.ironic.ca_file.empty()) connection.tls.ca_file = cfg.ironic.ca_file.string();
    if (!cfg.ironic.client_cert.empty()) connection.tls.client_cert = cfg.ironic.client_cert.string();
    if (!cfg.ironic.client_key.empty()) connection.tls.client_key = cfg.ironic.client_key.string();
    if (cfg.ironic.insecure) connection.tls.insecure = true;
    connection.timeout = cfg.ironic.timeout;
    return connection;
}

KubeWorkerSettings kube_settings(const DaemonConfig& cfg)
{
    KubeWorkerSettings s;
    s.kubeconfig = cfg.kubernetes.kubeconfig;
    s.context = cfg.kubernetes.context;
    s.default_namespace = cfg.kubernetes.namespace_;
    s.instance = cfg.instance;
    s.qps = cfg.limits.kubernetes_qps;
    s.resync = cfg.kubernetes.resync_interval;
    s.timeout = cfg.kubernetes.timeout;
    return s;
}

std::string short_id(const std::string& id) { return id.substr(0, 12); }

// Wait before the next attempt at a failing step: 15 s, doubling, at most 10 min.
double retry_backoff_seconds(int attempts)
{
    return std::min(600.0, 15.0 * std::pow(2.0, std::max(0, attempts - 1)));
}

// Wait before observing an unreachable Ironic again: 1 s after the first
// failure, doubling, at most 30 s, each ±20% so that a fleet of bastions does
// not come back in step. The loop still ticks every second meanwhile (Git,
// completions, the socket); only the observation, and so the planning, waits.
double observe_backoff_seconds(int failures, double jitter)
{
    return std::min(30.0, std::pow(2.0, std::max(0, failures - 1))) * jitter;
}

// What the loop knows right now, for the control socket's readers.
struct NodeView {
    std::string provision_state;
    std::string goal;
    std::string condition;
    std::string message;
    std::string uuid;
    std::string bmc;
    std::string power_state;  // observed: "power on" | "power off" | empty (unknown, not enrolled)
    std::string power_goal;   // the spec's power: on | off | empty (not asked)
    bool maintenance = false;
    std::string maintenance_reason;
    nlohmann::json inspection;  // inspection_json(): collected hardware and the check against expect; null when none
};

struct LoopView {
    std::string revision;
    std::string revision_author;
    std::string revision_summary;
    double last_poll = 0;
    double last_poll_ok = 0;
    std::string git_error;
    std::string rejected_commit;
    std::vector<std::string> rejected_errors;
    std::string ironic_error;
    double ironic_down_since = 0;  // first failed observation of this outage; 0 when reachable
    double ironic_retry_at = 0;    // the next observation attempt during an outage
    int ironic_failures = 0;       // failed observations in a row
    double git_poll_since = 0;     // a poll running on the Git thread since then; 0 when none
    std::string store_error;  // the last failed write to the state database, until one succeeds
    std::map<std::string, NodeView> nodes;
    Plan plan;
    bool ready = false;
};

class Daemon {
public:
    explicit Daemon(DaemonConfig config) : m_config(std::move(config)) {}

    int run();

private:
    bool acquire_lock();
    void register_commands(ControlServer& server);
    void signal_thread_main(sigset_t set);
    void tick();
    void poll_git(double now);
    void take_git_poll(const std::expected<PollResult, GitError>& polled, double started, double now);
    bool observe(double now);
    void plan_and_submit(double now);
    void record_completions(double now);
    void request_wakeup();
    void update_gauges();
    std::optional<Event> note_inspection(const Completion& completion, NodeStatus& status, double now);

    // A store write's outcome: a failure is logged (once per distinct
    // message) and shown in status until a later write succeeds.
    template <class T>
    void checked(const std::expected<T, StoreError>& result, const char* what)
    {
        std::lock_guard lock(m_view_mutex);
        if (result) {
            if (!m_view.store_error.empty()) {
                spdlog::info("store: writes succeed again");
                m_view.store_error.clear();
            }
            return;
        }
        std::string message = std::string(what) + ": " + result.error().message;
        if (message != m_view.store_error) spdlog::error("store: {} failed: {}", what, result.error().message);
        m_view.store_error = std::move(message);
    }
    void wait_next_tick(std::chrono::milliseconds max_wait);
    std::chrono::milliseconds next_poll_delay(bool failed);
    ExecutorLimits effective_limits() const;
    NodeStatus status_of(const std::string& name);
    nlohmann::json node_json(const std::string& name, const NodeView& view, const NodeStatus* status,
                             const std::map<std::string, NodeWait>& waits) const;
    ControlReply reload_config();

    DaemonConfig m_config;
    std::optional<Store> m_store;
    std::optional<StoreReader> m_reader;
    std::recursive_mutex m_store_mutex;  // the writer is shared by the loop and the workers' start hook
    std::optional<GitSource> m_git;
    std::optional<RevisionIntake> m_intake;
    std::optional<IronicConnection> m_ironic_connection;
    std::optional<IronicClient> m_observer;
    std::optional<CredentialsDirectory> m_credentials;
    std::string m_hmac_key;
    std::unique_ptr<Executor> m_executor;
    std::unique_ptr<KubeWorker> m_kube;
    DaemonMetrics m_metrics{METALSYNC_VERSION, unix_now()};
    std::unique_ptr<MetricsServer> m_metrics_server;
    std::map<std::string, NodeStatus> m_status;  // node_status rows, cached
    std::map<std::string, InspectionMemory> m_inspections;  // inspection rows, cached; under m_store_mutex
    ObservedState m_observed;

    mutable std::mutex m_view_mutex;
    LoopView m_view;

    std::mutex m_wake_mutex;
    std::condition_variable m_wake_cv;
    bool m_wake = false;
    std::atomic<bool> m_shutdown{false};
    std::atomic<bool> m_reload{false};
    std::atomic<bool> m_suspended{false};
    std::mutex m_suspend_mutex;
    std::set<std::string> m_suspended_nodes;
    std::chrono::steady_clock::time_point m_next_poll{};
    std::atomic<bool> m_poll_now{false};  // reconcile-now: start a poll at the next pass
    // The network half of a Git poll, on a thread of its own; see poll_git().
    std::future<std::expected<PollResult, GitError>> m_git_poll;
    std::chrono::steady_clock::time_point m_git_poll_started{};
    double m_git_poll_started_unix = 0;
    // Observation backoff while Ironic is unreachable.
    int m_observe_failures = 0;
    std::chrono::steady_clock::time_point m_next_observe{};
    std::atomic<bool> m_observe_now{false};  // reconcile-now: observe at the next pass, backoff or not
    int m_lock_fd = -1;
    std::mt19937 m_rng{std::random_device{}()};
};

bool Daemon::acquire_lock()
{
    auto path = m_config.state_dir / "metalsync.lock";
    m_lock_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (m_lock_fd < 0) {
        spdlog::critical("cannot open {}: {}", path.string(), std::strerror(errno));
        return false;
    }
    if (flock(m_lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {};
        auto n = ::pread(m_lock_fd, buf, sizeof buf - 1, 0);
        std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?";
        while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
        spdlog::critical("another metalsync (pid {}) is running with state directory {}", pid,
                         m_config.state_dir.string());
        return false;
    }
    auto pid = std::to_string(::getpid()) + "\n";
    (void)::ftruncate(m_lock_fd, 0);
    (void)::pwrite(m_lock_fd, pid.data(), pid.size(), 0);
    return true;
}

ExecutorLimits Daemon::effective_limits() const
{
    ExecutorLimits limits;
    limits.ironic_qps = m_config.limits.ironic_qps;
    limits.max_provisioning = m_config.limits.max_provisioning;
    limits.per_bmc = m_config.limits.per_bmc;
    limits.workers = m_config.limits.workers;
    // The repository's Policy may only tighten the daemon's limits.
    if (m_intake && m_intake->current()) {
        const auto& p = m_intake->current()->policy.limits;
        if (p.ironic_qps) limits.ironic_qps = std::min(limits.ironic_qps, *p.ironic_qps);
        if (p.max_provisioning) limits.max_provisioning = std::min(limits.max_provisioning, *p.max_provisioning);
        if (p.per_bmc) limits.per_bmc = std::min(limits.per_bmc, *p.per_bmc);
    }
    return limits;
}

std::chrono::milliseconds Daemon::next_poll_delay(bool failed)
{
    auto base = failed ? m_config.retry_interval : m_config.poll_interval;
    // ±10% jitter so a fleet of bastions does not poll one Git server in step.
    std::uniform_real_distribution<double> jitter(0.9, 1.1);
    return std::chrono::milliseconds(static_cast<long long>(static_cast<double>(base.count()) * jitter(m_rng)));
}

void Daemon::request_wakeup()
{
    std::lock_guard lock(m_wake_mutex);
    m_wake = true;
    m_wake_cv.notify_all();
}

void Daemon::wait_next_tick(std::chrono::milliseconds max_wait)
{
    std::unique_lock lock(m_wake_mutex);
    m_wake_cv.wait_for(lock, max_wait, [this] { return m_wake || m_shutdown.load(); });
    m_wake = false;
}

void Daemon::signal_thread_main(sigset_t set)
{
    while (true) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            m_reload = true;
            request_wakeup();
        } else if (sig == SIGUSR2) {
            return;  // our own wake-up to end this thread
        } else {
            m_shutdown = true;
            request_wakeup();
        }
    }
}

NodeStatus Daemon::status_of(const std::string& name)
{
    auto it = m_status.find(name);
    if (it != m_status.end()) {
        return it->second;
    }
    NodeStatus s;
    s.name = name;
    return s;
}

// The network half of a poll (ls-remote, fetch: up to the fetch deadline,
// 120 s by default) runs on a thread of its own, so that a slow or stalled
// remote never holds up observation, planning, the watchdog or SIGTERM. Its
// answer is taken here, on the loop thread, at the first pass after it
// arrives (it wakes the loop): loading, validating and recording the
// revision stay with the loop, and GitSource is never used by both threads
// at once (the next poll starts only after the last one was taken).
void Daemon::poll_git(double now)
{
    if (m_git_poll.valid()) {
        if (m_git_poll.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
            return;  // still fetching
        }
        auto polled = m_git_poll.get();
        take_git_poll(polled, std::chrono::duration<double>(std::chrono::steady_clock::now() - m_git_poll_started).count(),
                      now);
    }
    if (!m_poll_now.exchange(false) && std::chrono::steady_clock::now() < m_next_poll) {
        return;
    }
    m_git_poll_started = std::chrono::steady_clock::now();
    m_git_poll_started_unix = now;
    {
        std::lock_guard lock(m_view_mutex);
        m_view.git_poll_since = now;
    }
    m_git_poll = std::async(std::launch::async, [this, last = m_intake->last_tip()] {
        auto polled = m_git->poll(last);
        request_wakeup();
        return polled;
    });
}

void Daemon::take_git_poll(const std::expected<PollResult, GitError>& polled, double seconds, double now)
{
    auto result = m_intake->take(polled, now);
    m_metrics.git_poll(result.polled_ok, seconds, now);
    if (result.new_revision) m_metrics.revision(result.accepted);
    std::lock_guard lock(m_view_mutex);
    m_view.git_poll_since = 0;
    m_view.last_poll = m_git_poll_started_unix;
    if (!result.polled_ok) {
        m_view.git_error = result.error;
        m_next_poll = std::chrono::steady_clock::now() + next_poll_delay(true);
        return;
    }
    m_view.last_poll_ok = now;
    m_view.git_error.clear();
    if (result.new_revision && !result.accepted) {
        m_view.rejected_commit = result.commit;
        m_view.rejected_errors = result.rejection;
    } else if (result.accepted) {
        m_view.rejected_commit.clear();
        m_view.rejected_errors.clear();
    }
    if (auto current = m_intake->current()) {
        m_view.revision = current->revision;
        m_view.revision_author = m_intake->current_commit().author_name;
        m_view.revision_summary = m_intake->current_commit().summary;
    }
    m_next_poll = std::chrono::steady_clock::now() + next_poll_delay(false);
}

bool Daemon::observe(double now)
{
    const auto started = std::chrono::steady_clock::now();
    auto observed = m_observer->observe();
    m_metrics.observe_finished(observed.has_value(),
                               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    m_metrics.ironic_request(observed ? "success" : (observed.error().http_status == 0 ? "unavailable" : "error"));
    if (!observed) {
        ++m_observe_failures;
        std::uniform_real_distribution<double> jitter(0.8, 1.2);
        const double wait = observe_backoff_seconds(m_observe_failures, jitter(m_rng));
        m_next_observe = std::chrono::steady_clock::now() +
                         std::chrono::milliseconds(static_cast<long long>(wait * 1000.0));
        std::lock_guard lock(m_view_mutex);
        if (m_view.ironic_error != observed.error().describe()) {
            spdlog::warn("ironic: cannot observe: {}; nothing is planned until it answers (next attempt in {:.0f}s, "
                         "backing off to 30s)",
                         observed.error().describe(), wait);
        }
        m_view.ironic_error = observed.error().describe();
        if (m_view.ironic_down_since == 0) m_view.ironic_down_since = now;
        m_view.ironic_retry_at = now + wait;
        m_view.ironic_failures = m_observe_failures;
        return false;
    }
    {
        std::lock_guard lock(m_view_mutex);
        if (!m_view.ironic_error.empty()) {
            spdlog::info("ironic: reachable again at {} after {:.0f}s ({} failed observations)", m_observer->endpoint(),
                         now - m_view.ironic_down_since, m_observe_failures);
        }
        m_view.ironic_error.clear();
        m_view.ironic_down_since = 0;
        m_view.ironic_retry_at = 0;
        m_view.ironic_failures = 0;
    }
    m_observe_failures = 0;
    std::lock_guard store_lock(m_store_mutex);
    checked(m_store->replace_observed(*observed, now), "replace_observed");
    auto tx = m_store->transaction();
    for (const auto& [name, node] : observed->nodes) {
        auto status = status_of(name);
        NodeMemory memory = node_memory(status);
        auto before = memory;
        learn_from_observation(memory, node);
        auto previous = m_observed.nodes.find(name);
        bool state_changed = previous == m_observed.nodes.end() ||
                             previous->second.provision_state != node.provision_state;
        if (state_changed || before.was_active != memory.was_active || before.uuid != memory.uuid) {
            store_memory(status, memory);
            if (state_changed) {
                status.since = now;
            }
            m_status[name] = status;
            checked(m_store->put_node_status(status), "put_node_status");
        }
    }
    if (tx) {
        (void)tx->commit();
    }
    {
        std::lock_guard view_lock(m_view_mutex);  // workers copy observed nodes under this lock
        m_observed = std::move(*observed);
    }
    std::set<std::string> busy;
    for (const auto& [name, node] : m_observed.nodes) {
        if (is_busy_state(node.provision_state)) {
            busy.insert(name);
        }
    }
    m_executor->set_ironic_busy(busy);
    return true;
}

void Daemon::plan_and_submit(double now)
{
    auto desired = m_intake->current();
    if (!desired) {
        return;
    }
    std::map<std::string, NodeMemory> memory;
    {
        // Spec changes reset the attempt count and a validation failure.
        std::lock_guard store_lock(m_store_mutex);
        for (const auto& [name, spec] : desired->nodes) {
            auto status = status_of(name);
            auto hash = spec_hash(spec);
            if (status.spec_hash != hash) {
                status.spec_hash = hash;
                status.attempts = 0;
                status.failed = false;
                status.next_attempt_at.reset();
                if (status.last_error_type == "validation") {
                    status.last_error_type.clear();
                    status.last_error.clear();
                }
                m_status[name] = status;
                checked(m_store->put_node_status(status), "put_node_status");
            }
            memory[name] = node_memory(status);
            if (auto it = m_inspections.find(name); it != m_inspections.end()) memory[name].inspection = it->second;
        }
        for (const auto& [name, status] : m_status) {
            if (!memory.contains(name)) memory[name] = node_memory(status);
        }
    }
    PlanInput input{*desired, m_observed, memory, m_config.instance, now, {}};
    if (m_credentials) {
        input.secret_hashes = current_secret_hashes(*desired, *m_credentials, m_hmac_key);
    }
    Plan plan = plan_nodes(input);

    std::set<std::string> suspended_nodes;
    {
        std::lock_guard lock(m_suspend_mutex);
        suspended_nodes = m_suspended_nodes;
    }
    std::vector<QueuedAction> wanted;
    const auto& commit = m_intake->current_commit();
    for (auto& a : plan.actions) {
        if (m_suspended || suspended_nodes.contains(a.node)) {
            continue;
        }
        auto st = m_status.find(a.node);
        // A validation error from Ironic is not retried until the spec changes.
        if (st != m_status.end() && st->second.last_error_type == "validation" && desired->nodes.contains(a.node)) {
            continue;
        }
        QueuedAction q;
        q.action = a;
        q.revision = commit.id;
        q.author = commit.author_name;
        wanted.push_back(std::move(q));
    }
    auto replaced = m_executor->replace_queue(std::move(wanted));
    {
        std::lock_guard store_lock(m_store_mutex);
        auto tx = m_store->transaction();
        for (auto& c : replaced.cancelled) {
            if (c.journal_id > 0) {
                checked(m_store->journal_cancel(c.journal_id, "no longer planned: desired or observed state changed", now), "journal_cancel");
            }
        }
        if (tx) {
            (void)tx->commit();
        }
    }
    std::lock_guard lock(m_view_mutex);
    m_view.nodes.clear();
    for (const auto& v : plan.verdicts) {
        NodeView nv;
        nv.condition = to_string(v.condition);
        nv.message = v.message;
        if (auto it = m_observed.nodes.find(v.node); it != m_observed.nodes.end()) {
            nv.provision_state = it->second.provision_state;
            nv.uuid = it->second.uuid;
            nv.power_state = it->second.power_state;
            nv.maintenance = it->second.maintenance;
            nv.maintenance_reason = it->second.maintenance_reason;
        }
        if (auto it = desired->nodes.find(v.node); it != desired->nodes.end()) {
            nv.goal = to_string(it->second.provision_state);
            nv.bmc = it->second.bmc.address;
            if (it->second.power) nv.power_goal = to_string(*it->second.power);
            if (auto m = memory.find(v.node); m != memory.end() && m->second.inspection) {
                nv.inspection = inspection_json(m->second.inspection->hardware, it->second.expect);
            }
        }
        if (auto st = m_status.find(v.node); st != m_status.end() && st->second.last_error_type == "validation" &&
                                              desired->nodes.contains(v.node)) {
            nv.condition = "failed";
            nv.message = "Ironic refused the last step: " + st->second.last_error + " (fix the spec in Git)";
        }
        m_view.nodes[v.node] = nv;
    }
    m_view.plan = std::move(plan);
}

void Daemon::record_completions(double now)
{
    auto completions = m_executor->take_completions();
    if (completions.empty()) {
        return;
    }
    std::lock_guard store_lock(m_store_mutex);
    auto tx = m_store->transaction();
    for (auto& c : completions) {
        const auto& a = c.item.action;
        const auto& r = c.result;
        std::string verb = to_string(a.verb);
        m_metrics.action_finished(verb, DaemonMetrics::action_outcome(r));
        if (c.item.journal_id > 0) {
            checked(m_store->journal_finish(c.item.journal_id, r.ok ? JournalState::done : JournalState::failed,
                                          r.ok ? r.summary : r.error, now), "journal_finish");
        }
        auto status = status_of(a.node);
        NodeMemory memory = node_memory(status);
        if (r.ok) {
            apply_result(memory, r);
            store_memory(status, memory);
            if (a.retry) {
                status.attempts += 1;
                status.next_attempt_at = now + retry_backoff_seconds(status.attempts);
            }
            status.last_error_type.clear();
            status.last_error.clear();
            spdlog::info("node {}: {} ({}; revision {} by {})", a.node, r.summary.empty() ? verb : r.summary, a.reason,
                         short_id(c.item.revision), c.item.author);
        } else {
            status.last_error_type = r.error_type;
            status.last_error = r.error;
            if (!r.retryable && r.error_type != "validation") {
                status.attempts += 1;
                status.next_attempt_at = now + retry_backoff_seconds(status.attempts);
            }
            spdlog::warn("node {}: {} failed ({}): {}", a.node, verb, r.error_type, r.error);
        }
        auto inspection_event = note_inspection(c, status, now);
        m_status[a.node] = status;
        checked(m_store->put_node_status(status), "put_node_status");
        Event e;
        e.time = now;
        e.object_kind = "Node";
        e.object_name = a.node;
        e.name = "node." + verb + (r.ok ? ".requested" : ".failed");
        e.message = r.ok ? (r.summary.empty() ? a.reason : r.summary) : r.error;
        e.revision = c.item.revision;
        e.author = c.item.author;
        checked(m_store->add_event(e), "add_event");
        if (inspection_event) checked(m_store->add_event(*inspection_event), "add_event");
    }
    if (tx) {
        (void)tx->commit();
    }
}

// An inspection requested (or a new enrollment) drops the last result; a
// collected one is stored once and checked against the node's expect as Git
// says it now. A mismatch is the node's error until an action succeeds (the
// planner holds the node, so that is a new expect's re-inspection or provide).
std::optional<Event> Daemon::note_inspection(const Completion& completion, NodeStatus& status, double now)
{
    const auto& a = completion.item.action;
    const auto& r = completion.result;
    if (!r.ok) return std::nullopt;
    if (r.inspected) {
        m_inspections.erase(a.node);
        checked(m_store->delete_inspection(a.node), "delete_inspection");
    }
    if (!r.inspection) return std::nullopt;
    auto record = inspection_record(a.node, r.uuid, *r.inspection, now);
    checked(m_store->save_inspection(record), "save_inspection");
    auto memory = inspection_memory(record);
    m_inspections[a.node] = memory;
    Event e;
    e.time = now;
    e.object_kind = "Node";
    e.object_name = a.node;
    e.revision = completion.item.revision;
    e.author = completion.item.author;
    HardwareExpectation expect;
    if (const auto desired = m_intake->current()) {
        if (auto it = desired->nodes.find(a.node); it != desired->nodes.end()) expect = it->second.expect;
    }
    auto check = check_expectation(expect, memory.hardware);
    const std::string hardware = describe(memory.hardware);
    if (!check.ok()) {
        e.name = events::k_node_inspection_mismatch;
        e.message = "inspection does not match expect: " + check.mismatch_text() + " (inspected " + hardware +
                    "; revision " + short_id(e.revision) + "); held at manageable";
        status.last_error_type = "inspection-mismatch";
        status.last_error = check.mismatch_text();
        spdlog::warn("node {}: {}", a.node, e.message);
    } else {
        e.name = events::k_node_inspection_matched;
        e.message = has_expectation(expect) ? "inspection matched expect (" + check.match_text() + "): " + hardware
                                            : "inspection collected (no expect to check): " + hardware;
        spdlog::info("node {}: {}", a.node, e.message);
    }
    return e;
}

void Daemon::tick()
{
    double now = unix_now();
    const auto started = std::chrono::steady_clock::now();
    poll_git(now);
    record_completions(now);
    if (!m_intake->current()) {
        return;
    }
    m_kube->set_desired(m_intake->current(), m_intake->current_commit().author_name);
    if (!m_observe_now.exchange(false) && std::chrono::steady_clock::now() < m_next_observe) {
        return;  // Ironic unreachable: waiting out the observation backoff
    }
    if (!observe(now)) {
        return;  // never plan on an incomplete observation: every node would look missing
    }
    m_executor->set_limits(effective_limits());
    plan_and_submit(now);
    m_metrics.reconcile_finished(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

void Daemon::update_gauges()
{
    std::map<std::string, int> by_state;
    std::map<std::string, int> by_condition;
    {
        std::lock_guard lock(m_view_mutex);
        for (const auto& [_, n] : m_view.nodes) {
            by_state[n.provision_state]++;
            by_condition[n.condition]++;
        }
    }
    m_metrics.set_nodes_by_state(by_state);
    m_metrics.set_nodes_by_condition(by_condition);
    m_metrics.set_executor(m_executor->stats(), m_executor->waits());
    std::map<std::string, int> kube_states;
    for (const auto& v : m_kube->snapshot().objects) kube_states[to_string(v.state)]++;
    m_metrics.set_kube_objects(kube_states);
    m_metrics.set_suspended(m_suspended.load());
}

int Daemon::run()
{
    std::error_code ec;
    std::filesystem::create_directories(m_config.state_dir, ec);
    if (ec) {
        spdlog::critical("cannot create state directory {}: {}", m_config.state_dir.string(), ec.message());
        return 1;
    }
    if (!acquire_lock()) {
        return 1;
    }
    auto store = Store::open(m_config.state_dir / "metalsync.db");
    if (!store) {
        spdlog::critical("{}", store.error().message);
        return 1;
    }
    m_store.emplace(std::move(*store));
    auto reader = StoreReader::open(m_config.state_dir / "metalsync.db");
    if (!reader) {
        spdlog::critical("{}", reader.error().message);
        return 1;
    }
    m_reader.emplace(std::move(*reader));
    if (auto statuses = m_store->list_node_statuses()) {
        for (auto& s : *statuses) {
            m_status[s.name] = s;
        }
    }
    if (auto inspections = m_store->list_inspections()) {
        for (const auto& record : *inspections) {
            m_inspections[record.name] = inspection_memory(record);
        }
    }
    // After a crash: actions that were pending or running are not redone
    // blindly. Each tick re-observes Ironic first and plans again from what
    // it sees, so a step that reached Ironic is not repeated.
    if (auto unfinished = m_store->journal_unfinished(); unfinished && !unfinished->empty()) {
        double now = unix_now();
        for (const auto& e : *unfinished) {
            checked(m_store->journal_cancel(e.id, "interrupted by a daemon restart; re-observed and planned again", now), "journal_cancel");
        }
        spdlog::warn("journal: {} actions were interrupted by the last stop; re-observing before acting",
                     unfinished->size());
    }
    std::string error;
    m_ironic_connection = ironic_connection(m_config, error);
    if (!m_ironic_connection) {
        spdlog::critical("{}", error);
        return 1;
    }
    // One budget of ironicQPS for every request to Ironic: the observer's and
    // every worker's (their clients are made from copies of this connection).
    m_ironic_connection->rate_limiter = std::make_shared<RateLimiter>(effective_limits().ironic_qps);
    m_observer.emplace(*m_ironic_connection);
    if (auto version = m_observer->negotiate(); !version) {
        if (version.error().http_status == 0 || version.error().retryable) {
            spdlog::warn("ironic: {} (will keep trying)", version.error().describe());
        } else {
            spdlog::critical("ironic: {}", version.error().describe());
            return 1;
        }
    } else {
        spdlog::info("ironic: {} speaks API {}", m_observer->endpoint(), version->str());
    }
    m_credentials.emplace(m_config.credentials_dir, m_config.credentials_fallback_dir);
    auto key = load_or_create_hmac_key(m_config.state_dir / "credentials.hmac-key");
    if (!key) {
        spdlog::critical("{}", key.error());
        return 1;
    }
    m_hmac_key = *key;

    if (!m_config.has_git) {
        spdlog::critical("{}: no git remote configured (git.url)", m_config.source_file.string());
        return 1;
    }
    m_git.emplace(m_config.git);
    m_intake.emplace(*m_git, *m_store);
    m_intake->restore();
    if (auto current = m_intake->current()) {
        // The revision in force survives a restart, even before the next poll succeeds.
        std::lock_guard lock(m_view_mutex);
        m_view.revision = current->revision;
        m_view.revision_author = m_intake->current_commit().author_name;
        m_view.revision_summary = m_intake->current_commit().summary;
    }

    // The Kubernetes half runs on its own thread; it starts from the
    // inventory of the last pass, so removals made while down are pruned.
    std::vector<ObjectRef> inventory;
    if (auto last = m_store->last_inventory(); last && *last) {
        for (const auto& row : (*last)->rows) {
            inventory.push_back(ObjectRef{row.api_version, row.kind, row.namespace_, row.name});
        }
    }
    m_kube = std::make_unique<KubeWorker>(
        kube_settings(m_config), std::move(inventory),
        [this](const Event& e) {
            std::lock_guard lock(m_store_mutex);
            checked(m_store->add_event(e), "add_event");
        },
        [this](const std::string& revision, const std::vector<ObjectRef>& refs) {
            std::vector<KubeInventoryRow> rows;
            for (const auto& r : refs) rows.push_back(KubeInventoryRow{r.api_version, r.kind, r.namespace_, r.name});
            std::lock_guard lock(m_store_mutex);
            if (auto saved = m_store->save_inventory(revision, rows); !saved) {
                spdlog::warn("kubernetes: inventory not saved: {}", saved.error().message);
            }
        });

    // Signals: blocked in every thread, taken by one thread with sigwait and
    // turned into flags the loop reads. No logic in a handler.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread signal_thread([this, set] { signal_thread_main(set); });
    m_kube->start();  // after the mask: every thread must block the signals sigwait takes

    auto connection = *m_ironic_connection;
    auto* credentials = &*m_credentials;
    std::string hmac = m_hmac_key;
    auto* self = this;
    m_executor = std::make_unique<Executor>(
        effective_limits(),
        [connection, credentials, hmac, self]() -> Executor::Runner {
            auto client = std::make_shared<IronicClient>(connection);
            auto runner = std::make_shared<NodeActionRunner>(*client, *credentials, hmac);
            return [client, runner, self](const Action& action) {
                // The observed node as of the last tick (copied under the loop's view lock).
                std::optional<ObservedNode> observed;
                {
                    std::lock_guard lock(self->m_view_mutex);
                    if (auto it = self->m_observed.nodes.find(action.node); it != self->m_observed.nodes.end()) {
                        observed = it->second;
                    }
                }
                return runner->run(action, observed ? &*observed : nullptr);
            };
        },
        // Journal first, then run: written on the worker right before the call.
        [self](QueuedAction& item) {
            std::lock_guard lock(self->m_store_mutex);
            JournalEntry entry;
            entry.object_kind = "Node";
            entry.object_name = item.action.node;
            entry.verb = to_string(item.action.verb);
            entry.params = item.action.params;
            entry.revision = item.revision;
            entry.author = item.author;
            entry.created_at = unix_now();
            auto id = self->m_store->journal_add(entry);
            self->checked(id, "journal_add");
            if (id) {
                item.journal_id = *id;
                self->checked(self->m_store->journal_mark_running(*id, entry.created_at), "journal_mark_running");
            }
        });
    m_executor->use_rate_limiter(connection.rate_limiter);
    m_executor->start();

    std::optional<gid_t> admin_group;
    if (!m_config.socket_group.empty()) {
        if (auto* g = getgrnam(m_config.socket_group.c_str())) {
            admin_group = g->gr_gid;
        } else {
            spdlog::warn("socket: group '{}' does not exist; only root and this user may run mutating commands",
                         m_config.socket_group);
        }
    }
    ControlServerOptions socket_options;
    socket_options.admin_group = admin_group;
    ControlServer server(m_config.socket, socket_options);
    register_commands(server);
    if (auto started = server.start(); !started) {
        spdlog::critical("socket: {}", started.error());
        m_executor->stop(std::chrono::milliseconds(0));
        m_kube->stop();
        kill(getpid(), SIGUSR2);
        signal_thread.join();
        return 1;
    }
    if (!m_config.metrics_listen.empty()) {
        m_metrics_server = std::make_unique<MetricsServer>(m_config.metrics_listen, [this] { return m_metrics.render(); });
        if (auto started = m_metrics_server->start(); !started) {
            // Metrics are not worth refusing to reconcile for; Prometheus shows the target down.
            spdlog::error("metrics: {} (continuing without the metrics listener)", started.error());
        }
    }
    spdlog::info("metalsync {} started: state {}, socket {}, git {}", METALSYNC_VERSION, m_config.state_dir.string(),
                 m_config.socket.string(), redact_url(m_config.git.url));

    bool notified_ready = false;
    bool watchdog = sd_watchdog_enabled(0, nullptr) > 0;
    while (!m_shutdown) {
        if (m_reload.exchange(false)) {
            auto reply = reload_config();
            spdlog::info("config-reload: {}", reply.text);
        }
        tick();
        update_gauges();  // every pass: the queue and limits stay current while Ironic is down
        if (!notified_ready && m_intake->current()) {
            sd_notify(0, "READY=1");
            notified_ready = true;
            m_metrics.set_ready(true);
            std::lock_guard lock(m_view_mutex);
            m_view.ready = true;
        }
        {
            std::lock_guard lock(m_view_mutex);
            std::size_t at_goal = 0;
            for (const auto& [_, n] : m_view.nodes) {
                if (n.condition == "at-goal") ++at_goal;
            }
            auto status = "STATUS=" + std::to_string(m_view.nodes.size()) + " nodes, " + std::to_string(at_goal) +
                          " at goal; revision " + short_id(m_view.revision);
            sd_notify(0, status.c_str());
        }
        if (watchdog) {
            sd_notify(0, "WATCHDOG=1");
        }
        wait_next_tick(std::chrono::milliseconds(1000));
    }
    spdlog::info("shutting down: no new actions; waiting up to 10s for those in flight");
    sd_notify(0, "STOPPING=1");
    if (m_git_poll.valid()) {
        // A fetch in flight is abandoned (its worker killed); the next start fetches again.
        git::cancel_all_workers();
        m_git_poll.wait();
    }
    auto never_started = m_executor->stop(std::chrono::seconds(10));
    m_kube->stop();
    record_completions(unix_now());
    server.stop();
    if (m_metrics_server) m_metrics_server->stop();
    kill(getpid(), SIGUSR2);
    signal_thread.join();
    spdlog::info("stopped ({} queued actions not started; they are planned again at the next start)",
                 never_started.size());
    return 0;
}

ControlReply Daemon::reload_config()
{
    auto cfg = load_daemon_config(m_config.source_file);
    if (!cfg) {
        std::string text = "configuration not reloaded, the running one is kept: ";
        for (const auto& d : cfg.error()) {
            text += d.to_string() + "; ";
        }
        return {k_result_error, text, nullptr};
    }
    std::vector<std::string> restart_needed;
    if (cfg->state_dir != m_config.state_dir) restart_needed.push_back("stateDir");
    if (cfg->socket != m_config.socket) restart_needed.push_back("socket");
    if (cfg->git.url != m_config.git.url || cfg->git.branch != m_config.git.branch || cfg->git.tag != m_config.git.tag ||
        cfg->git.commit != m_config.git.commit || cfg->git.path != m_config.git.path) {
        restart_needed.push_back("git");
    }
    if (cfg->ironic.endpoint != m_config.ironic.endpoint || cfg->ironic.cloud != m_config.ironic.cloud) {
        restart_needed.push_back("ironic");
    }
    m_config.limits = cfg->limits;
    m_config.poll_interval = cfg->poll_interval;
    m_config.retry_interval = cfg->retry_interval;
    m_config.log_level = cfg->log_level;
    if (cfg->instance != m_config.instance) restart_needed.push_back("instance");
    m_config.kubernetes = cfg->kubernetes;
    m_kube->set_settings(kube_settings(m_config));
    set_log_level(cfg->log_level);
    if (cfg->metrics_listen == m_config.metrics_listen && m_metrics_server && !m_metrics_server->running()) {
        if (auto started = m_metrics_server->start(); !started) spdlog::error("metrics: {}", started.error());
    }
    if (cfg->metrics_listen != m_config.metrics_listen) {
        if (cfg->metrics_listen.empty()) {
            if (m_metrics_server) m_metrics_server->stop();
            m_metrics_server.reset();
            m_config.metrics_listen.clear();
        } else if (!m_metrics_server) {
            auto server = std::make_unique<MetricsServer>(cfg->metrics_listen, [this] { return m_metrics.render(); });
            if (auto started = server->start(); started) {
                m_metrics_server = std::move(server);
                m_config.metrics_listen = cfg->metrics_listen;
            } else {
                spdlog::error("metrics: {}", started.error());
            }
        } else if (auto moved = m_metrics_server->rebind(cfg->metrics_listen); moved) {
            m_config.metrics_listen = cfg->metrics_listen;
        } else {
            spdlog::error("metrics: {} (still serving on {})", moved.error(), m_config.metrics_listen);
        }
    }
    std::string text = "configuration reloaded (limits, intervals, log level, kubernetes, metrics)";
    if (!restart_needed.empty()) {
        text += "; changes to ";
        for (std::size_t i = 0; i < restart_needed.size(); ++i) {
            text += (i ? ", " : "") + restart_needed[i];
        }
        text += " take effect at the next restart";
    }
    return {k_result_success, text, nullptr};
}


nlohmann::json Daemon::node_json(const std::string& name, const NodeView& view, const NodeStatus* status,
                                 const std::map<std::string, NodeWait>& waits) const
{
    nlohmann::json j = {{"name", name},
                        {"provisionState", view.provision_state},
                        {"goal", view.goal},
                        {"condition", view.condition},
                        {"message", view.message},
                        {"uuid", view.uuid},
                        {"bmc", view.bmc}};
    if (!view.inspection.is_null()) j["inspection"] = view.inspection;
    if (!view.power_state.empty()) j["powerState"] = view.power_state;
    if (!view.power_goal.empty()) j["powerGoal"] = view.power_goal;
    if (!view.uuid.empty()) {
        j["maintenance"] = view.maintenance;
        if (view.maintenance) j["maintenanceReason"] = view.maintenance_reason;
    }
    if (status != nullptr) {
        j["attempts"] = status->attempts;
        j["lastErrorType"] = status->last_error_type;
        j["lastError"] = status->last_error;
        if (status->since) j["since"] = *status->since;
        if (status->next_attempt_at) j["nextAttemptAt"] = *status->next_attempt_at;
    }
    if (auto it = waits.find(name); it != waits.end()) {
        j["waitingOn"] = it->second.waiting_on;
        j["queuePosition"] = it->second.position;
    }
    return j;
}

void Daemon::register_commands(ControlServer& server)
{
    server.add_command(
        "status-get",
        [this](const ControlRequest&) -> ControlReply {
            std::lock_guard lock(m_view_mutex);
            nlohmann::json by_condition = nlohmann::json::object();
            nlohmann::json by_state = nlohmann::json::object();
            int at_goal = 0;
            for (const auto& [_, n] : m_view.nodes) {
                by_condition[n.condition] = by_condition.value(n.condition, 0) + 1;
                std::string st = n.provision_state.empty() ? "not enrolled" : n.provision_state;
                by_state[st] = by_state.value(st, 0) + 1;
                if (n.condition == "at-goal") ++at_goal;
            }
            auto stats = m_executor->stats();
            const KubeSnapshot kube = m_kube->snapshot();
            nlohmann::json args = {
                {"revision", m_view.revision},
                {"revisionAuthor", m_view.revision_author},
                {"revisionSummary", m_view.revision_summary},
                {"lastPoll", m_view.last_poll},
                {"lastSuccessfulPoll", m_view.last_poll_ok},
                {"gitError", m_view.git_error.empty() ? nlohmann::json() : nlohmann::json(m_view.git_error)},
                {"ironicError", m_view.ironic_error.empty() ? nlohmann::json() : nlohmann::json(m_view.ironic_error)},
                {"ironicOutage", m_view.ironic_down_since == 0
                                     ? nlohmann::json()
                                     : nlohmann::json{{"since", m_view.ironic_down_since},
                                                      {"failedObservations", m_view.ironic_failures},
                                                      {"nextAttempt", m_view.ironic_retry_at}}},
                {"gitPollingSince", m_view.git_poll_since == 0 ? nlohmann::json() : nlohmann::json(m_view.git_poll_since)},
                {"storeError", m_view.store_error.empty() ? nlohmann::json() : nlohmann::json(m_view.store_error)},
                {"rejected", m_view.rejected_commit.empty()
                                 ? nlohmann::json()
                                 : nlohmann::json{{"commit", m_view.rejected_commit}, {"errors", m_view.rejected_errors}}},
                {"suspended", m_suspended.load()},
                {"nodes", {{"total", m_view.nodes.size()}, {"atGoal", at_goal}, {"byCondition", by_condition}, {"byState", by_state}}},
                {"executor", {{"queued", stats.queued}, {"running", stats.running}, {"provisioning", stats.busy_provisioning}, {"saturated", stats.saturated}}},
                {"massDeletionHeld", m_view.plan.mass_deletion_held ? nlohmann::json(m_view.plan.mass_deletion_message) : nlohmann::json()},
                {"kubernetes", kube_status_json(kube)},
            };
            std::string text = std::to_string(m_view.nodes.size()) + " nodes, " + std::to_string(at_goal) + " at goal";
            if (!m_view.ready) text += "; no revision accepted yet";
            if (!m_view.git_error.empty()) text += "; git: " + m_view.git_error;
            if (!m_view.ironic_error.empty()) {
                text += "; ironic: " + m_view.ironic_error + " (" + std::to_string(m_view.ironic_failures) +
                        " failed observations, next attempt in " +
                        std::to_string(std::max(0L, std::lround(m_view.ironic_retry_at - unix_now()))) + "s)";
            }
            if (!m_view.store_error.empty()) text += "; store: " + m_view.store_error;
            if (!m_view.rejected_commit.empty()) text += "; revision " + short_id(m_view.rejected_commit) + " rejected";
            if (kube.enabled || !kube.error.empty()) text += "; " + kube_status_text(kube);
            return {k_result_success, text, args};
        },
        false, "Daemon summary: revision, Git and Ironic health, nodes by condition and state, executor");
    server.add_command(
        "revision-get",
        [this](const ControlRequest&) -> ControlReply {
            auto revisions = m_reader->list_revisions(10);
            if (!revisions) return {k_result_error, revisions.error().message, nullptr};
            nlohmann::json list = nlohmann::json::array();
            for (const auto& r : *revisions) {
                list.push_back({{"commit", r.commit_id}, {"author", r.author_name}, {"committedAt", r.committed_at},
                                {"seenAt", r.seen_at}, {"status", to_string(r.status)}, {"errors", r.errors},
                                {"summary", r.summary}});
            }
            std::lock_guard lock(m_view_mutex);
            return {k_result_success, "revision in force: " + short_id(m_view.revision),
                    {{"current", m_view.revision}, {"revisions", list}}};
        },
        false, "The revision in force and the last revisions seen (accepted or rejected, with reasons)");
    server.add_command(
        "node-list",
        [this](const ControlRequest&) -> ControlReply {
            auto waits = m_executor->waits();
            std::lock_guard store_lock(m_store_mutex);  // m_status; order: store, then view
            std::lock_guard lock(m_view_mutex);
            nlohmann::json nodes = nlohmann::json::array();
            for (const auto& [name, view] : m_view.nodes) {
                auto st = m_status.find(name);
                nodes.push_back(node_json(name, view, st == m_status.end() ? nullptr : &st->second, waits));
            }
            if (nodes.empty()) return {k_result_empty, "no nodes", {{"nodes", nodes}}};
            return {k_result_success, std::to_string(nodes.size()) + " nodes", {{"nodes", nodes}}};
        },
        false, "Every node: provision state, goal, condition, attempts, last error");
    server.add_command(
        "node-get",
        [this](const ControlRequest& request) -> ControlReply {
            std::string name = request.arguments.value("name", "");
            if (name.empty()) return {k_result_error, "node-get needs arguments {\"name\": NODE}", nullptr};
            auto waits = m_executor->waits();
            nlohmann::json node;
            {
                std::lock_guard store_lock(m_store_mutex);
                std::lock_guard lock(m_view_mutex);
                auto it = m_view.nodes.find(name);
                if (it == m_view.nodes.end()) return {k_result_empty, "no node '" + name + "'", nullptr};
                auto st = m_status.find(name);
                node = node_json(name, it->second, st == m_status.end() ? nullptr : &st->second, waits);
            }
            EventFilter filter;
            filter.object_name = name;
            filter.limit = 20;
            nlohmann::json events = nlohmann::json::array();
            if (auto list = m_reader->list_events(filter)) {
                for (const auto& e : *list) {
                    events.push_back({{"time", e.time}, {"name", e.name}, {"message", e.message}, {"revision", e.revision}, {"author", e.author}});
                }
            }
            nlohmann::json actions = nlohmann::json::array();
            if (auto list = m_reader->journal_for(name, 20)) {
                for (const auto& j : *list) {
                    nlohmann::json a = {{"id", j.id}, {"verb", j.verb}, {"state", to_string(j.state)}, {"createdAt", j.created_at},
                                        {"result", j.result}, {"revision", j.revision}, {"author", j.author}, {"attempt", j.attempt}};
                    if (j.finished_at) a["finishedAt"] = *j.finished_at;
                    actions.push_back(a);
                }
            }
            return {k_result_success, name + ": " + node.value("condition", ""), {{"node", node}, {"events", events}, {"actions", actions}}};
        },
        false, "One node: state, goal, why it waits, error, attempts, recent events and actions with their commits");
    server.add_command(
        "event-list",
        [this](const ControlRequest& request) -> ControlReply {
            EventFilter filter;
            if (request.arguments.contains("object")) filter.object_name = request.arguments.value("object", "");
            if (request.arguments.contains("since")) filter.since = request.arguments.value("since", 0.0);
            filter.limit = request.arguments.value("limit", 100);
            auto list = m_reader->list_events(filter);
            if (!list) return {k_result_error, list.error().message, nullptr};
            nlohmann::json events = nlohmann::json::array();
            for (const auto& e : *list) {
                events.push_back({{"time", e.time}, {"objectKind", e.object_kind}, {"objectName", e.object_name}, {"name", e.name},
                                  {"message", e.message}, {"revision", e.revision}, {"author", e.author}});
            }
            if (events.empty()) return {k_result_empty, "no events", {{"events", events}}};
            return {k_result_success, std::to_string(events.size()) + " events", {{"events", events}}};
        },
        false, "Events, newest first; arguments: object, since (unix seconds), limit");
    server.add_command(
        "plan-get",
        [this](const ControlRequest&) -> ControlReply {
            const KubeSnapshot kube = m_kube->snapshot();
            std::lock_guard lock(m_view_mutex);
            auto j = to_json(m_view.plan);
            nlohmann::json steps = nlohmann::json::array();
            for (const auto& step : kube.pending) {
                steps.push_back({{"verb", step.verb == KubeStepVerb::apply ? "apply" : "delete"},
                                 {"object", describe(step.ref)},
                                 {"reason", step.reason}});
            }
            j["kubernetes"] = steps;
            const bool empty = m_view.plan.empty() && steps.empty();
            return {empty ? k_result_empty : k_result_success,
                    std::to_string(m_view.plan.actions.size()) + " actions planned" +
                        (steps.empty() ? std::string{} : ", " + std::to_string(steps.size()) + " Kubernetes steps pending"),
                    j};
        },
        false, "The actions of the last plan, and the Kubernetes steps not yet done");
    register_kube_commands(server, *m_kube, *m_reader);
    server.add_command(
        "reconcile-now",
        [this](const ControlRequest&) -> ControlReply {
            m_poll_now = true;
            m_observe_now = true;
            request_wakeup();
            m_kube->wake();
            return {k_result_success, "reconcile requested: polling Git and observing Ironic now", nullptr};
        },
        true, "Poll Git and reconcile now");
    server.add_command(
        "suspend",
        [this](const ControlRequest& request) -> ControlReply {
            std::string name = request.arguments.value("name", "");
            if (name.empty()) {
                m_suspended = true;
                m_kube->set_suspended(true);
                return {k_result_success, "suspended: no new actions start (in-flight ones finish)", nullptr};
            }
            std::lock_guard lock(m_suspend_mutex);
            m_suspended_nodes.insert(name);
            return {k_result_success, "node " + name + " suspended", nullptr};
        },
        true, "Stop starting actions, for the whole daemon or one node (arguments: name)");
    server.add_command(
        "resume",
        [this](const ControlRequest& request) -> ControlReply {
            std::string name = request.arguments.value("name", "");
            if (name.empty()) {
                m_suspended = false;
                m_kube->set_suspended(false);
            } else {
                std::lock_guard lock(m_suspend_mutex);
                m_suspended_nodes.erase(name);
            }
            request_wakeup();
            return {k_result_success, name.empty() ? "resumed" : "node " + name + " resumed", nullptr};
        },
        true, "Resume after suspend");
    server.add_command(
        "config-reload",
        [this](const ControlRequest&) -> ControlReply {
            m_reload = true;
            request_wakeup();
            return {k_result_success, "config-reload requested (the result is logged)", nullptr};
        },
        true, "Re-read the configuration file; a bad one keeps the running configuration");
    server.add_command(
        "version-get",
        [](const ControlRequest&) -> ControlReply {
            return {k_result_success, std::string("metalsync ") + METALSYNC_VERSION, {{"version", METALSYNC_VERSION}}};
        },
        false, "The daemon's version");
    server.add_command(
        "shutdown",
        [this](const ControlRequest&) -> ControlReply {
            m_shutdown = true;
            request_wakeup();
            return {k_result_success, "shutting down", nullptr};
        },
        true, "Stop the daemon gracefully");
}

} // namespace

int run_daemon(const DaemonOptions& options)
{
    auto cfg = load_daemon_config(options.config);
    if (!cfg) {
        for (const auto& d : cfg.error()) {
            std::cerr << d.to_string() << "\n";
        }
        std::cerr << "metalsync daemon: " << options.config << " is not a valid configuration\n";
        return 2;
    }
    if (!options.log_format.empty()) {
        cfg->log_format = options.log_format;
    }
    if (options.check_config) {
        std::cout << options.config << ": configuration is valid\n";
        return 0;
    }
    setup_logging(cfg->log_format, cfg->log_level);
    Daemon daemon(std::move(*cfg));
    return daemon.run();
}

} // namespace metalsync
