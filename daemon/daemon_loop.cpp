// One pass of the daemon's loop: take a finished Git poll (or start one),
// take the executor's completions, observe Ironic, plan, and replace the
// executor's queue; and the small pieces of state the pass keeps.

#include "daemon/daemon_internal.hpp"
#include "reconcilers/interrupted_action.hpp"

namespace metalsync::daemon_internal {

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
        bool state_changed = false;
        if (previous != m_observed.nodes.end()) {
            state_changed = previous->second.provision_state != node.provision_state;
        } else if (auto restored = m_restored_states.find(name);
                   restored != m_restored_states.end() && status.since) {
            state_changed = restored->second != node.provision_state;  // first observation since a restart
        } else {
            state_changed = true;
        }
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
    m_restored_states.clear();
    if (!m_interrupted.empty()) resolve_interrupted_actions(now);
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
        if (m_retry_now.exchange(false)) {
            // `metalsync sync`: the operator fixed something (a credentials file): try now.
            for (auto& [name, status] : m_status) {
                if (!status.last_error_type.empty() && status.next_attempt_at && *status.next_attempt_at > now) {
                    status.next_attempt_at = now;
                    checked(m_store->put_node_status(status), "put_node_status");
                }
            }
        }
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
    std::vector<Action> provider_actions;
    PlanInput input{*desired, m_observed, memory, m_config.instance, now, {}, {}};
    input.claimed = provider_step(*desired, now, provider_actions);
    if (m_credentials) {
        input.secret_hashes = current_secret_hashes(*desired, *m_credentials, m_hmac_key);
    }
    Plan plan = plan_nodes(input);

    std::set<std::string> suspended_nodes;
    {
        std::lock_guard lock(m_suspend_mutex);
        suspended_nodes = m_suspended_nodes;
    }
    std::set<std::string> unsettled;  // interrupted actions not yet settled: their nodes wait
    for (const auto& entry : m_interrupted) unsettled.insert(entry.object_name);
    std::vector<QueuedAction> wanted;
    const auto& commit = m_intake->current_commit();
    for (auto& a : plan.actions) {
        if (m_suspended || suspended_nodes.contains(a.node) || unsettled.contains(a.node)) {
            continue;
        }
        auto st = m_status.find(a.node);
        // A validation error from Ironic is not retried until the spec changes.
        if (st != m_status.end() && st->second.last_error_type == "validation" && desired->nodes.contains(a.node)) {
            continue;
        }
        // Any other failed step waits out its backoff (a missing credentials
        // file is not read again every second), whatever step comes next.
        if (st != m_status.end() && !st->second.last_error_type.empty() && st->second.next_attempt_at &&
            *st->second.next_attempt_at > now) {
            continue;
        }
        QueuedAction q;
        q.action = a;
        q.revision = commit.id;
        q.author = commit.author_name;
        wanted.push_back(std::move(q));
    }
    for (auto& a : provider_actions) {
        if (m_suspended || suspended_nodes.contains(a.node) || unsettled.contains(a.node)) {
            continue;
        }
        QueuedAction q;
        q.action = std::move(a);
        q.revision = commit.id;  // the revision in force; no author: a Machine asked, not a commit
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
        if (auto st = m_status.find(v.node); st != m_status.end() && st->second.last_error_type != "validation" &&
                                              !st->second.last_error_type.empty() && st->second.next_attempt_at &&
                                              *st->second.next_attempt_at > now && v.condition != NodeCondition::at_goal) {
            nv.condition = "waiting";
            nv.message = "retrying in " + std::to_string(static_cast<long>(std::ceil(*st->second.next_attempt_at - now))) +
                         " s after: " + st->second.last_error;
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

// Each journal entry left running by the last stop, judged by this first
// observation: done, failed or not started, recorded with its event, and
// the commit and author that asked for it.
void Daemon::resolve_interrupted_actions(double now)
{
    std::lock_guard store_lock(m_store_mutex);
    auto tx = m_store->transaction();
    std::map<std::string, int> counts;
    std::vector<JournalEntry> pending;
    std::size_t settled = 0;
    for (const auto& entry : m_interrupted) {
        const auto found = m_observed.nodes.find(entry.object_name);
        const ObservedNode* node = found == m_observed.nodes.end() ? nullptr : &found->second;
        const auto resolution = resolve_interrupted(entry.verb, entry.params, entry.started_at, node);
        // Ironic takes a provision request (202) before its conductor moves
        // the node: a request that arrived just before the kill can still show
        // the old state. "Not started" is believed only once that has had
        // time to show; until then the node gets no new action.
        if ((resolution.outcome == InterruptedOutcome::not_started ||
             resolution.outcome == InterruptedOutcome::unknown) &&
            now - entry.started_at.value_or(entry.created_at) < k_interrupted_settle_seconds) {
            pending.push_back(entry);
            continue;
        }
        ++settled;
        counts[to_string(resolution.outcome)]++;
        const std::string what = entry.verb + " (revision " + short_id(entry.revision) +
                                 (entry.author.empty() ? std::string() : " by " + entry.author) + ")";
        std::string message;
        switch (resolution.outcome) {
        case InterruptedOutcome::done:
            message = "interrupted by a restart after it reached Ironic: " + resolution.reason;
            checked(m_store->journal_finish(entry.id, JournalState::done, message, now), "journal_finish");
            break;
        case InterruptedOutcome::failed:
            message = "interrupted by a restart; Ironic failed it: " + resolution.reason;
            checked(m_store->journal_finish(entry.id, JournalState::failed, message, now), "journal_finish");
            break;
        case InterruptedOutcome::not_started:
            message = "interrupted by a restart before it reached Ironic (" + resolution.reason + "); planned again";
            checked(m_store->journal_cancel(entry.id, message, now), "journal_cancel");
            break;
        case InterruptedOutcome::unknown:
            message = "interrupted by a restart; " + resolution.reason;
            checked(m_store->journal_cancel(entry.id, message, now), "journal_cancel");
            break;
        }
        spdlog::info("node {}: {} {}", entry.object_name, what, message);
        Event e;
        e.time = now;
        e.object_kind = entry.object_kind;
        e.object_name = entry.object_name;
        e.name = std::string("action.interrupted.") + to_string(resolution.outcome);
        e.message = entry.verb + ": " + message;
        e.revision = entry.revision;
        e.author = entry.author;
        checked(m_store->add_event(e), "add_event");
    }
    if (tx) (void)tx->commit();
    if (settled > 0) {
        spdlog::warn("journal: {} interrupted actions settled against Ironic: {} done, {} failed, {} not started, "
                     "{} unknown{}",
                     settled, counts["done"], counts["failed"], counts["not-started"], counts["unknown"],
                     pending.empty() ? "" : "; " + std::to_string(pending.size()) + " wait for Ironic to show them");
    }
    m_interrupted = std::move(pending);
}

Event completion_event(const QueuedAction& item, const ActionResult& result, double now)
{
    const auto& a = item.action;
    Event e;
    e.time = now;
    e.object_kind = "Node";
    e.object_name = a.node;
    e.name = std::string("node.") + to_string(a.verb) + (result.ok ? ".requested" : ".failed");
    e.message = result.ok ? (result.summary.empty() ? a.reason : result.summary) : result.error;
    e.revision = item.revision;
    e.author = item.author;
    return e;
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
        if (c.item.journal_id > 0 && !c.item.recorded) {
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
            // The same failure again is logged once, at debug after that, until it changes.
            const bool repeated = status.last_error_type == r.error_type && status.last_error == r.error;
            status.last_error_type = r.error_type;
            status.last_error = r.error;
            if (!r.retryable && r.error_type != "validation") {
                status.attempts += 1;
                status.next_attempt_at = now + retry_backoff_seconds(status.attempts);
            }
            if (repeated) {
                spdlog::debug("node {}: {} failed again ({}): {}", a.node, verb, r.error_type, r.error);
            } else {
                spdlog::warn("node {}: {} failed ({}): {}", a.node, verb, r.error_type, r.error);
            }
        }
        auto inspection_event = note_inspection(c, status, now);
        m_status[a.node] = status;
        checked(m_store->put_node_status(status), "put_node_status");
        if (!c.item.recorded) checked(m_store->add_event(completion_event(c.item, r, now)), "add_event");
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

// Events and finished journal entries are kept this long, then deleted (once
// an hour), so the store does not grow without bound on a busy fleet.
constexpr double k_history_seconds = 90.0 * 24 * 3600;

void Daemon::prune_history(double now)
{
    if (now < m_next_history_prune) return;
    m_next_history_prune = now + 3600;
    std::lock_guard store_lock(m_store_mutex);
    auto events = m_store->prune_events(now - k_history_seconds);
    auto journal = m_store->prune_journal(now - k_history_seconds);
    checked(events, "prune_events");
    checked(journal, "prune_journal");
    if ((events && *events > 0) || (journal && *journal > 0)) {
        spdlog::info("store: {} events and {} journal entries older than 90 days deleted", events.value_or(0),
                     journal.value_or(0));
    }
}

void Daemon::tick()
{
    double now = unix_now();
    const auto started = std::chrono::steady_clock::now();
    prune_history(now);
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

} // namespace metalsync::daemon_internal
