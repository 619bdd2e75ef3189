#include "daemon/executor.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace metalsync {

using Clock = std::chrono::steady_clock;

Executor::Executor(ExecutorLimits limits, RunnerFactory factory, StartHook on_start, FinishHook on_finish)
    : m_limits(limits), m_factory(std::move(factory)), m_on_start(std::move(on_start)), m_on_finish(std::move(on_finish)),
      m_limiter(std::make_shared<RateLimiter>(limits.ironic_qps))
{
}

Executor::~Executor() { (void)stop(std::chrono::milliseconds(0)); }

void Executor::start()
{
    std::lock_guard lock(m_mutex);
    m_stopping = false;
    m_limiter->resume();
    for (int i = 0; i < std::max(1, m_limits.workers); ++i) {
        m_workers.emplace_back([this] { worker_main(); });
    }
}

std::vector<QueuedAction> Executor::stop(std::chrono::milliseconds grace)
{
    std::vector<QueuedAction> never_started;
    {
        std::unique_lock lock(m_mutex);
        if (m_workers.empty()) {
            return never_started;
        }
        m_stopping = true;
        never_started.assign(m_queue.begin(), m_queue.end());
        m_queue.clear();
        m_work_cv.notify_all();
        m_done_cv.wait_for(lock, grace, [this] { return m_running_nodes.empty(); });
        if (!m_running_nodes.empty()) {
            spdlog::warn("executor: {} actions still in flight at shutdown; they stay 'running' in the journal and "
                         "are re-observed at the next start",
                         m_running_nodes.size());
            // Requests still waiting for a token are not sent: the grace is over.
            m_limiter->interrupt();
        }
    }
    for (auto& t : m_workers) {
        // Workers still inside a REST call finish it (every call has a timeout).
        if (t.joinable()) {
            t.join();
        }
    }
    m_workers.clear();
    // The limiter may be shared with the daemon's observer: only our workers were to be cut short.
    m_limiter->resume();
    return never_started;
}

void Executor::set_limits(const ExecutorLimits& limits)
{
    std::lock_guard lock(m_mutex);
    m_limits.ironic_qps = limits.ironic_qps;
    m_limits.max_provisioning = limits.max_provisioning;
    m_limits.per_bmc = limits.per_bmc;
    m_limiter->set_rate(limits.ironic_qps);
    m_work_cv.notify_all();
}

void Executor::use_rate_limiter(std::shared_ptr<RateLimiter> limiter)
{
    if (!limiter) {
        return;
    }
    std::lock_guard lock(m_mutex);
    limiter->set_rate(m_limits.ironic_qps);
    m_limiter = std::move(limiter);
    m_work_cv.notify_all();
}

std::shared_ptr<RateLimiter> Executor::rate_limiter() const
{
    std::lock_guard lock(m_mutex);
    return m_limiter;
}

void Executor::set_ironic_busy(const std::set<std::string>& nodes)
{
    std::lock_guard lock(m_mutex);
    m_ironic_busy = nodes;
    m_work_cv.notify_all();
}

std::string Executor::key_of(const Action& action)
{
    return action.node + '\0' + to_string(action.verb) + '\0' + action.params.dump();
}

Executor::Replace Executor::replace_queue(std::vector<QueuedAction> wanted)
{
    Replace out;
    std::lock_guard lock(m_mutex);
    std::map<std::string, QueuedAction> existing;
    for (auto& q : m_queue) {
        existing.emplace(q.key, std::move(q));
    }
    m_queue.clear();
    // A node whose finished action has not been taken yet was planned on an
    // observation that may predate that action's effect (it finished after
    // the daemon took completions and observed): planning it again now could
    // repeat the action, so it is refused like a node in flight.
    std::set<std::string> unrecorded;
    for (const auto& c : m_completions) {
        unrecorded.insert(c.item.action.node);
    }
    std::set<std::string> seen_nodes;
    for (auto& w : wanted) {
        w.key = key_of(w.action);
        if (m_running_nodes.contains(w.action.node) || unrecorded.contains(w.action.node)) {
            out.refused.push_back(std::move(w));
            continue;
        }
        if (auto it = existing.find(w.key); it != existing.end()) {
            m_queue.push_back(std::move(it->second));
            existing.erase(it);
        } else {
            out.added.push_back(w);
            m_queue.push_back(std::move(w));
        }
        seen_nodes.insert(m_queue.back().action.node);
    }
    for (auto& [_, q] : existing) {
        out.cancelled.push_back(std::move(q));
    }
    m_work_cv.notify_all();
    return out;
}

std::vector<Completion> Executor::take_completions()
{
    std::lock_guard lock(m_mutex);
    std::vector<Completion> out;
    out.swap(m_completions);
    return out;
}

bool Executor::wait_for_completion(std::chrono::milliseconds timeout)
{
    std::unique_lock lock(m_mutex);
    return m_done_cv.wait_for(lock, timeout, [this] { return !m_completions.empty(); });
}

bool Executor::is_queued_or_running(const std::string& node) const
{
    std::lock_guard lock(m_mutex);
    if (m_running_nodes.contains(node)) {
        return true;
    }
    return std::any_of(m_queue.begin(), m_queue.end(), [&](const QueuedAction& q) { return q.action.node == node; });
}

ExecutorStats Executor::stats() const
{
    std::lock_guard lock(m_mutex);
    ExecutorStats s;
    s.queued = static_cast<int>(m_queue.size());
    s.running = static_cast<int>(m_running_nodes.size());
    s.busy_provisioning = provisioning_count_locked();
    s.saturated.assign(m_saturated.begin(), m_saturated.end());
    s.started = m_started;
    s.completed = m_completed;
    return s;
}

std::map<std::string, NodeWait> Executor::waits() const
{
    std::lock_guard lock(m_mutex);
    return m_waits;
}

int Executor::provisioning_count_locked() const
{
    // Ironic's busy nodes plus our in-flight provisioning actions, without
    // counting a node twice.
    int count = static_cast<int>(m_ironic_busy.size());
    for (const auto& n : m_running_provisioning) {
        if (!m_ironic_busy.contains(n)) {
            ++count;
        }
    }
    return count;
}

int Executor::pick_locked(Clock::time_point now, Clock::time_point& retry_at)
{
    m_waits.clear();
    m_saturated.clear();
    int busy = provisioning_count_locked();
    int chosen = -1;
    int position = 0;
    // One worker at a time stands in the limiter's line for the next
    // admission; the others would only hold places ahead of requests.
    const auto self = std::this_thread::get_id();
    bool asked_limiter = false;
    auto rate_allows = [&] {
        if (m_admitting && *m_admitting != self) {
            return false;
        }
        asked_limiter = true;
        if (m_limiter->try_prepay()) {
            m_admitting.reset();
            return true;
        }
        m_admitting = self;
        return false;
    };
    for (std::size_t i = 0; i < m_queue.size(); ++i) {
        const auto& a = m_queue[i].action;
        ++position;
        std::string why;
        if (m_running_nodes.contains(a.node)) {
            why = "an action already in flight for this node";
        } else if (!a.bmc.empty() && m_running_bmc[a.bmc] >= m_limits.per_bmc) {
            why = "perBMC (" + a.bmc + " busy)";
            m_saturated.insert("perBMC");
        } else if (a.provisioning && busy >= m_limits.max_provisioning) {
            why = "maxProvisioning (" + std::to_string(busy) + " of " + std::to_string(m_limits.max_provisioning) +
                  " nodes provisioning)";
            m_saturated.insert("maxProvisioning");
        } else if (chosen >= 0) {
            why = "a free worker";
        } else if (!rate_allows()) {
            // The token goes to this (the picking) worker's thread: the
            // action's first request uses it. Until then this worker keeps
            // a place in the limiter's line (RateLimiter::try_prepay).
            why = fmt::format("ironicQPS ({:g} requests/s)", m_limiter->rate());
            m_saturated.insert("ironicQPS");
            retry_at = std::min(retry_at, now + m_limiter->time_until_free());
        } else {
            chosen = static_cast<int>(i);
            continue;
        }
        m_waits[a.node] = NodeWait{why, position};
    }
    if (!asked_limiter && m_admitting == self) {
        m_limiter->forfeit_prepaid();  // nothing waits on the rate now: give up this worker's place in line
        m_admitting.reset();
    }
    return chosen;
}

void Executor::worker_main()
{
    Runner run = m_factory();
    std::unique_lock lock(m_mutex);
    while (!m_stopping) {
        auto now = Clock::now();
        auto retry_at = now + std::chrono::seconds(1);
        int index = pick_locked(now, retry_at);
        if (index < 0) {
            m_work_cv.wait_until(lock, retry_at);
            continue;
        }
        QueuedAction item = std::move(m_queue[static_cast<std::size_t>(index)]);
        m_queue.erase(m_queue.begin() + index);
        if (!m_queue.empty()) {
            m_work_cv.notify_one();  // another idle worker takes the next place in the limiter's line
        }
        auto limiter = m_limiter;  // holds this thread's prepaid token
        const Action& a = item.action;
        m_running_nodes.insert(a.node);
        if (!a.bmc.empty()) {
            ++m_running_bmc[a.bmc];
        }
        if (a.provisioning) {
            m_running_provisioning.insert(a.node);
        }
        ++m_started;
        lock.unlock();
        if (m_on_start) {
            m_on_start(item);
        }
        ActionResult result;
        try {
            result = run(item.action);
        } catch (const std::exception& e) {
            result.ok = false;
            result.error_type = "internal";
            result.error = std::string("internal error: ") + e.what();
        }
        limiter->forfeit_prepaid();
        if (m_on_finish) {
            try {
                m_on_finish(item, result);
            } catch (const std::exception&) {
                item.recorded = false;  // the loop records it instead
            }
        }
        lock.lock();
        m_running_nodes.erase(a.node);
        if (!a.bmc.empty() && --m_running_bmc[a.bmc] <= 0) {
            m_running_bmc.erase(a.bmc);
        }
        m_running_provisioning.erase(a.node);
        ++m_completed;
        m_completions.push_back(Completion{std::move(item), std::move(result)});
        m_done_cv.notify_all();
        m_work_cv.notify_all();
    }
    if (m_admitting == std::this_thread::get_id()) {
        m_limiter->forfeit_prepaid();  // this worker's place in the limiter's line
        m_admitting.reset();
    }
}

} // namespace metalsync
