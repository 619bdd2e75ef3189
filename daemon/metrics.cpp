#include "daemon/metrics.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include "reconcilers/plan.hpp"
#include "sources/yaml_reader.hpp"

namespace metalsync::metrics {

namespace detail {

struct Series {
    std::atomic<double> value{0}; // counter, gauge
    // Histogram: one count per bucket (not cumulative; render adds them up),
    // the last one for values above every bound.
    std::shared_ptr<const std::vector<double>> bounds;
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets;
    std::atomic<double> sum{0};
};

class Family {
public:
    Family(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
           std::vector<double> bounds)
        : m_name(std::move(name)), m_help(std::move(help)), m_type(type), m_label_names(std::move(label_names)),
          m_bounds(std::make_shared<const std::vector<double>>(std::move(bounds)))
    {
        if (m_label_names.empty()) {
            m_series.emplace(LabelValues{}, make_series());
        }
    }

    [[nodiscard]] bool same_shape(MetricType type, const std::vector<std::string>& label_names,
                                  const std::vector<double>& bounds) const
    {
        return m_type == type && m_label_names == label_names && *m_bounds == bounds;
    }

    [[nodiscard]] MetricType type() const { return m_type; }

    std::shared_ptr<Series> child(const LabelValues& values)
    {
        check_arity(values);
        std::lock_guard lock(m_mutex);
        auto it = m_series.find(values);
        if (it == m_series.end()) {
            it = m_series.emplace(values, make_series()).first;
        }
        return it->second;
    }

    void replace_gauges(const std::map<LabelValues, double>& values)
    {
        std::map<LabelValues, std::shared_ptr<Series>> fresh;
        for (const auto& [labels, value] : values) {
            check_arity(labels);
            auto series = make_series();
            series->value.store(value, std::memory_order_relaxed);
            fresh.emplace(labels, std::move(series));
        }
        std::lock_guard lock(m_mutex);
        m_series.swap(fresh);
    }

    void render(std::string& out) const;

private:
    void check_arity(const LabelValues& values) const
    {
        if (values.size() != m_label_names.size()) {
            throw std::invalid_argument("metric " + m_name + ": " + std::to_string(values.size()) +
                                        " label values given for " + std::to_string(m_label_names.size()) +
                                        " label names");
        }
    }

    [[nodiscard]] std::shared_ptr<Series> make_series() const
    {
        auto series = std::make_shared<Series>();
        if (m_type == MetricType::histogram) {
            series->bounds = m_bounds;
            series->buckets = std::make_unique<std::atomic<std::uint64_t>[]>(m_bounds->size() + 1);
        }
        return series;
    }

    // {a="x",b="y"} with an optional extra label (le) last; nothing for no labels.
    void append_labels(std::string& out, const LabelValues& values, std::string_view extra_name = {},
                       std::string_view extra_value = {}) const;

    std::string m_name;
    std::string m_help;
    MetricType m_type;
    std::vector<std::string> m_label_names;
    std::shared_ptr<const std::vector<double>> m_bounds;
    mutable std::mutex m_mutex;
    std::map<LabelValues, std::shared_ptr<Series>> m_series;
};

} // namespace detail

namespace {


void append_escaped(std::string& out, std::string_view text, bool quotes)
{
    for (std::size_t i = 0; i < text.size();) {
        char c = text[i];
        std::size_t len = utf8_sequence_length(text, i);
        if (len == 0) {
            out += "\xEF\xBF\xBD";
            ++i;
            continue;
        }
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '"' && quotes) {
            out += "\\\"";
        } else {
            out.append(text.substr(i, len));
        }
        i += len;
    }
}

void append_value(std::string& out, double value)
{
    if (std::isnan(value)) {
        out += "NaN";
        return;
    }
    if (std::isinf(value)) {
        out += value > 0 ? "+Inf" : "-Inf";
        return;
    }
    std::array<char, 32> buf{};
    std::to_chars_result r{};
    if (value == std::trunc(value) && std::fabs(value) < 1e15) {
        r = std::to_chars(buf.data(), buf.data() + buf.size(), static_cast<long long>(value));
    } else {
        r = std::to_chars(buf.data(), buf.data() + buf.size(), value);
    }
    out.append(buf.data(), r.ptr);
}

void append_uint(std::string& out, std::uint64_t value)
{
    std::array<char, 24> buf{};
    auto r = std::to_chars(buf.data(), buf.data() + buf.size(), value);
    out.append(buf.data(), r.ptr);
}

const char* type_name(MetricType type)
{
    switch (type) {
    case MetricType::counter:
        return "counter";
    case MetricType::gauge:
        return "gauge";
    case MetricType::histogram:
        return "histogram";
    }
    return "untyped";
}

void atomic_add(std::atomic<double>& target, double amount)
{
    target.fetch_add(amount, std::memory_order_relaxed);
}

} // namespace

bool valid_metric_name(std::string_view name)
{
    if (name.empty()) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

bool valid_label_name(std::string_view name)
{
    if (name.empty() || name.starts_with("__")) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

std::string escape_label_value(std::string_view value)
{
    std::string out;
    out.reserve(value.size());
    append_escaped(out, value, true);
    return out;
}

std::string escape_help(std::string_view help)
{
    std::string out;
    out.reserve(help.size());
    append_escaped(out, help, false);
    return out;
}

std::string format_value(double value)
{
    std::string out;
    append_value(out, value);
    return out;
}

void detail::Family::append_labels(std::string& out, const LabelValues& values, std::string_view extra_name,
                                   std::string_view extra_value) const
{
    if (values.empty() && extra_name.empty()) return;
    out += '{';
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (i > 0) out += ',';
        out += m_label_names[i];
        out += "=\"";
        append_escaped(out, values[i], true);
        out += '"';
    }
    if (!extra_name.empty()) {
        if (!values.empty()) out += ',';
        out += extra_name;
        out += "=\"";
        out += extra_value;
        out += '"';
    }
    out += '}';
}

void detail::Family::render(std::string& out) const
{
    out += "# HELP ";
    out += m_name;
    out += ' ';
    append_escaped(out, m_help, false);
    out += "\n# TYPE ";
    out += m_name;
    out += ' ';
    out += type_name(m_type);
    out += '\n';
    std::lock_guard lock(m_mutex);
    for (const auto& [labels, series] : m_series) {
        if (m_type != MetricType::histogram) {
            out += m_name;
            append_labels(out, labels);
            out += ' ';
            append_value(out, series->value.load(std::memory_order_relaxed));
            out += '\n';
            continue;
        }
        // _count is the sum of the bucket counts read here, so the +Inf
        // bucket always equals _count even while observations race the scrape.
        std::uint64_t cumulative = 0;
        std::string le;
        for (std::size_t b = 0; b <= m_bounds->size(); ++b) {
            cumulative += series->buckets[b].load(std::memory_order_relaxed);
            le = b < m_bounds->size() ? format_value((*m_bounds)[b]) : "+Inf";
            out += m_name;
            out += "_bucket";
            append_labels(out, labels, "le", le);
            out += ' ';
            append_uint(out, cumulative);
            out += '\n';
        }
        out += m_name;
        out += "_sum";
        append_labels(out, labels);
        out += ' ';
        append_value(out, series->sum.load(std::memory_order_relaxed));
        out += '\n';
        out += m_name;
        out += "_count";
        append_labels(out, labels);
        out += ' ';
        append_uint(out, cumulative);
        out += '\n';
    }
}

void Counter::inc(double amount) const
{
    if (!m_series || !(amount >= 0)) return;
    atomic_add(m_series->value, amount);
}

double Counter::value() const
{
    return m_series ? m_series->value.load(std::memory_order_relaxed) : 0;
}

void Gauge::set(double value) const
{
    if (m_series) m_series->value.store(value, std::memory_order_relaxed);
}

void Gauge::inc(double amount) const
{
    if (m_series) atomic_add(m_series->value, amount);
}

double Gauge::value() const
{
    return m_series ? m_series->value.load(std::memory_order_relaxed) : 0;
}

void Histogram::observe(double value) const
{
    if (!m_series || std::isnan(value)) return;
    const auto& bounds = *m_series->bounds;
    auto index = static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
    m_series->buckets[index].fetch_add(1, std::memory_order_relaxed);
    atomic_add(m_series->sum, value);
}

std::uint64_t Histogram::count() const
{
    if (!m_series) return 0;
    std::uint64_t total = 0;
    for (std::size_t b = 0; b <= m_series->bounds->size(); ++b) {
        total += m_series->buckets[b].load(std::memory_order_relaxed);
    }
    return total;
}

double Histogram::sum() const
{
    return m_series ? m_series->sum.load(std::memory_order_relaxed) : 0;
}

Counter CounterFamily::labels(const LabelValues& values)
{
    return Counter(m_family.child(values));
}

Gauge GaugeFamily::labels(const LabelValues& values)
{
    return Gauge(m_family.child(values));
}

void GaugeFamily::replace(const std::map<LabelValues, double>& values)
{
    m_family.replace_gauges(values);
}

Histogram HistogramFamily::labels(const LabelValues& values)
{
    return Histogram(m_family.child(values));
}

Registry::Registry() = default;
Registry::~Registry() = default;

detail::Family& Registry::add(const std::string& name, const std::string& help, MetricType type,
                              std::vector<std::string> label_names, std::vector<double> bounds)
{
    if (!valid_metric_name(name)) {
        throw std::invalid_argument("invalid metric name '" + name + "'");
    }
    for (std::size_t i = 0; i < label_names.size(); ++i) {
        const auto& label = label_names[i];
        if (!valid_label_name(label)) {
            throw std::invalid_argument("metric " + name + ": invalid label name '" + label + "'");
        }
        if (type == MetricType::histogram && label == "le") {
            throw std::invalid_argument("metric " + name + ": a histogram may not have a label named le");
        }
        if (std::find(label_names.begin(), label_names.begin() + static_cast<std::ptrdiff_t>(i), label) !=
            label_names.begin() + static_cast<std::ptrdiff_t>(i)) {
            throw std::invalid_argument("metric " + name + ": label '" + label + "' given twice");
        }
    }
    if (type == MetricType::histogram) {
        for (std::size_t i = 0; i < bounds.size(); ++i) {
            if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
                throw std::invalid_argument("metric " + name +
                                            ": bucket bounds must be finite and strictly increasing");
            }
        }
    } else {
        bounds.clear();
    }
    std::lock_guard lock(m_mutex);
    if (auto it = m_families.find(name); it != m_families.end()) {
        if (!it->second->same_shape(type, label_names, bounds)) {
            throw std::invalid_argument("metric " + name + " registered twice with different types or labels");
        }
        return *it->second;
    }
    // Series names must not collide across families: a histogram x owns
    // x_bucket, x_sum and x_count.
    auto series_names = [](const std::string& family, MetricType t) {
        std::vector<std::string> names{family};
        if (t == MetricType::histogram) {
            names = {family + "_bucket", family + "_sum", family + "_count"};
        }
        return names;
    };
    for (const auto& mine : series_names(name, type)) {
        for (const auto& [other_name, other] : m_families) {
            for (const auto& theirs : series_names(other_name, other->type())) {
                if (mine == theirs) {
                    throw std::invalid_argument("metric " + name + " clashes with the series of " + other_name);
                }
            }
        }
    }
    auto family = std::make_unique<detail::Family>(name, help, type, std::move(label_names), std::move(bounds));
    auto& ref = *family;
    m_families.emplace(name, std::move(family));
    return ref;
}

CounterFamily Registry::counter(const std::string& name, const std::string& help, std::vector<std::string> label_names)
{
    return CounterFamily(add(name, help, MetricType::counter, std::move(label_names), {}));
}

GaugeFamily Registry::gauge(const std::string& name, const std::string& help, std::vector<std::string> label_names)
{
    return GaugeFamily(add(name, help, MetricType::gauge, std::move(label_names), {}));
}

HistogramFamily Registry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                                    std::vector<std::string> label_names)
{
    return HistogramFamily(add(name, help, MetricType::histogram, std::move(label_names), std::move(bounds)));
}

void Registry::render_to(std::string& out) const
{
    std::lock_guard lock(m_mutex);
    for (const auto& [_, family] : m_families) {
        family->render(out);
    }
}

std::string Registry::render() const
{
    std::string out;
    out.reserve(16384);
    render_to(out);
    return out;
}

} // namespace metalsync::metrics

namespace metalsync {

namespace {

using metrics::LabelValues;

// Seconds. A tick at 10,000 nodes takes a few hundred ms (observe pages
// through Ironic); a stuck one, minutes.
const std::vector<double> k_reconcile_buckets{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
const std::vector<double> k_fetch_buckets{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};

constexpr std::array<std::string_view, 9> k_action_outcomes{
    "success", "validation", "locked", "unavailable", "credentials", "not-found", "conflict", "internal", "error"};
// Limits the executor names in NodeWait::waiting_on and ExecutorStats::saturated.
constexpr std::array<std::string_view, 5> k_wait_limits{"ironicQPS", "maxProvisioning", "perBMC", "workers", "node"};
constexpr std::array<std::string_view, 3> k_saturable_limits{"ironicQPS", "maxProvisioning", "perBMC"};

std::map<LabelValues, double> one_label(const std::map<std::string, int>& counts)
{
    std::map<LabelValues, double> out;
    for (const auto& [key, count] : counts) {
        out[LabelValues{key}] += count;
    }
    return out;
}

} // namespace

DaemonMetrics::DaemonMetrics(std::string version, double start_time_seconds)
    : m_actions(m_registry.counter("metalsync_actions_total",
                                   "Actions the executor completed, by verb and outcome (success or error type).",
                                   {"verb", "outcome"})),
      m_nodes(m_registry.gauge("metalsync_nodes", "Nodes by Ironic provision state at the last observation.",
                               {"provision_state"})),
      m_nodes_by_condition(m_registry.gauge("metalsync_nodes_by_condition",
                                            "Nodes by reconcile condition at the last plan.", {"condition"})),
      m_queue_waiting(m_registry.gauge("metalsync_queue_waiting",
                                       "Queued actions held back, by the limit that holds them.", {"limit"})),
      m_limit_saturated(m_registry.gauge(
          "metalsync_limit_saturated", "1 when the limit held an action back at the executor's last pick.", {"limit"})),
      m_ironic_requests(m_registry.counter("metalsync_ironic_requests_total",
                                           "Calls to Ironic, by outcome (success or error type).", {"outcome"})),
      m_kube_apply(m_registry.counter("metalsync_kube_apply_total",
                                      "Server-side applies sent to the Kubernetes management cluster, by outcome: success, error, dry-run (asked what the server would store, to decide whether to apply), refused (the server refuses the object as Git has it).", {"outcome"})),
      m_kube_objects(m_registry.gauge("metalsync_kube_objects", "Kubernetes objects managed, by state.", {"state"})),
      m_provider_machines(m_registry.gauge("metalsync_provider_machines",
                                           "The Cluster API provider's MetalsyncMachines, by their last step (claim, deploy, in-sync, wait, release, failed ...).", {"step"})),
      m_provider_steps(m_registry.counter("metalsync_provider_steps_total",
                                          "Steps the Cluster API provider took or reported, by step: claim, deploy, report-provisioned, release, unclaim, forget, conflict, failed ...; counted once per change of a machine's step.", {"step"}))
{
    m_registry.gauge("metalsync_build_info", "The running metalsync's version; always 1.", {"version"})
        .labels({std::move(version)})
        .set(1);
    m_registry.gauge("metalsync_start_time_seconds", "When the daemon started, in unix seconds.")
        .get()
        .set(start_time_seconds);
    m_ready = m_registry.gauge("metalsync_ready", "1 once a revision is in force (systemd READY=1).").get();
    m_suspended = m_registry.gauge("metalsync_suspended", "1 while the daemon is suspended by an operator.").get();
    m_reconciles =
        m_registry.counter("metalsync_reconcile_total", "Reconcile ticks that observed Ironic and planned.").get();
    m_reconcile_duration =
        m_registry
            .histogram("metalsync_reconcile_duration_seconds",
                       "Duration of a reconcile tick (poll, observe, plan, submit).", k_reconcile_buckets)
            .get();
    m_queue_depth = m_registry.gauge("metalsync_queue_depth", "Actions queued in the executor, not started.").get();
    m_actions_running = m_registry.gauge("metalsync_actions_running", "Actions running on executor workers.").get();
    m_nodes_provisioning = m_registry
                               .gauge("metalsync_nodes_provisioning",
                                      "Nodes counted against maxProvisioning (Ironic busy plus in flight).")
                               .get();
    m_git_last_success = m_registry
                             .gauge("metalsync_git_last_poll_success_timestamp_seconds",
                                    "When Git was last polled successfully, in unix seconds (0: never).")
                             .get();
    m_git_last_poll = m_registry
                          .gauge("metalsync_git_last_poll_timestamp_seconds",
                                 "When Git was last polled, successfully or not, in unix seconds (0: never).")
                          .get();
    m_git_fetch_duration =
        m_registry
            .histogram("metalsync_git_fetch_duration_seconds",
                       "Duration of a Git poll (ls-remote, and fetch when the tip moved).", k_fetch_buckets)
            .get();
    m_git_polls = m_registry.counter("metalsync_git_polls_total", "Git polls, successful or not.").get();
    m_git_failures = m_registry.counter("metalsync_git_poll_failures_total", "Git polls that failed.").get();
    auto revisions = m_registry.counter("metalsync_revisions_total",
                                        "New Git revisions evaluated, by status (accepted or rejected).", {"status"});
    m_revisions_accepted = revisions.labels({"accepted"});
    m_revisions_rejected = revisions.labels({"rejected"});
    m_observe_duration = m_registry
                             .histogram("metalsync_ironic_observe_duration_seconds",
                                        "Duration of one observation of every node in Ironic.", k_fetch_buckets)
                             .get();
    m_observe_failures = m_registry
                             .counter("metalsync_ironic_observe_failures_total",
                                      "Observations of Ironic that failed (no plan that tick).")
                             .get();

    m_ironic_requests.labels({"success"});
    m_kube_apply.labels({"success"});
    set_nodes_by_condition({});
    set_queue(0, {});
    set_saturated({});
}

void DaemonMetrics::reconcile_finished(double seconds)
{
    m_reconciles.inc();
    m_reconcile_duration.observe(seconds);
}

void DaemonMetrics::action_finished(std::string_view verb, std::string_view outcome)
{
    m_actions.labels({std::string(verb), std::string(outcome)}).inc();
}

void DaemonMetrics::set_nodes_by_state(const std::map<std::string, int>& counts)
{
    std::map<LabelValues, double> values;
    for (const auto& [state, count] : counts) {
        values[LabelValues{state.empty() ? "not enrolled" : state}] += count;
    }
    m_nodes.replace(values);
}

void DaemonMetrics::set_nodes_by_condition(const std::map<std::string, int>& counts)
{
    auto values = one_label(counts);
    for (auto condition :
         {NodeCondition::at_goal, NodeCondition::progressing, NodeCondition::waiting, NodeCondition::failed,
          NodeCondition::orphaned, NodeCondition::held, NodeCondition::maintenance, NodeCondition::claimed}) {
        values.try_emplace(LabelValues{to_string(condition)}, 0);
    }
    m_nodes_by_condition.replace(values);
}

void DaemonMetrics::set_queue(int depth, const std::map<std::string, int>& waiting_by_limit)
{
    m_queue_depth.set(depth);
    auto values = one_label(waiting_by_limit);
    for (auto limit : k_wait_limits) {
        values.try_emplace(LabelValues{std::string(limit)}, 0);
    }
    m_queue_waiting.replace(values);
}

void DaemonMetrics::set_saturated(const std::vector<std::string>& limits)
{
    std::map<LabelValues, double> values;
    for (auto limit : k_saturable_limits) {
        values[LabelValues{std::string(limit)}] = 0;
    }
    for (const auto& limit : limits) {
        values[LabelValues{limit}] = 1;
    }
    m_limit_saturated.replace(values);
}

void DaemonMetrics::set_running(int running_actions, int nodes_provisioning)
{
    m_actions_running.set(running_actions);
    m_nodes_provisioning.set(nodes_provisioning);
}

void DaemonMetrics::set_executor(const ExecutorStats& stats, const std::map<std::string, NodeWait>& waits)
{
    std::map<std::string, int> waiting;
    for (const auto& [_, wait] : waits) {
        ++waiting[limit_of_wait(wait.waiting_on)];
    }
    set_queue(stats.queued, waiting);
    set_saturated(stats.saturated);
    set_running(stats.running, stats.busy_provisioning);
}

void DaemonMetrics::git_poll(bool ok, double fetch_seconds, double now)
{
    m_git_polls.inc();
    m_git_last_poll.set(now);
    m_git_fetch_duration.observe(fetch_seconds);
    if (ok) {
        m_git_last_success.set(now);
    } else {
        m_git_failures.inc();
    }
}

void DaemonMetrics::revision(bool accepted)
{
    (accepted ? m_revisions_accepted : m_revisions_rejected).inc();
}

void DaemonMetrics::ironic_request(std::string_view outcome)
{
    m_ironic_requests.labels({std::string(outcome)}).inc();
}

void DaemonMetrics::observe_finished(bool ok, double seconds)
{
    m_observe_duration.observe(seconds);
    if (!ok) m_observe_failures.inc();
}

void DaemonMetrics::kube_apply(std::string_view outcome)
{
    m_kube_apply.labels({std::string(outcome)}).inc();
}

void DaemonMetrics::set_kube_objects(const std::map<std::string, int>& by_state)
{
    m_kube_objects.replace(one_label(by_state));
}

void DaemonMetrics::set_provider_machines(const std::map<std::string, int>& by_step)
{
    m_provider_machines.replace(one_label(by_step));
}

void DaemonMetrics::provider_step(std::string_view step)
{
    m_provider_steps.labels({std::string(step)}).inc();
}

void DaemonMetrics::set_ready(bool ready)
{
    m_ready.set(ready ? 1 : 0);
}

void DaemonMetrics::set_suspended(bool suspended)
{
    m_suspended.set(suspended ? 1 : 0);
}

std::string DaemonMetrics::action_outcome(const ActionResult& result)
{
    if (result.ok) return "success";
    for (auto known : k_action_outcomes) {
        if (result.error_type == known) return std::string(known);
    }
    return "error";
}

std::string DaemonMetrics::limit_of_wait(std::string_view waiting_on)
{
    for (auto limit : k_saturable_limits) {
        if (waiting_on.starts_with(limit)) return std::string(limit);
    }
    if (waiting_on.find("worker") != std::string_view::npos) return "workers";
    if (waiting_on.find("in flight") != std::string_view::npos) return "node";
    return "other";
}

} // namespace metalsync
