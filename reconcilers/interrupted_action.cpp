#include "reconcilers/interrupted_action.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <ctime>
#include <set>

namespace metalsync {

namespace {

// Ironic and the daemon share a host's clock, or NTP-disciplined ones: a
// second of slack keeps a transition made just after the journal entry from
// looking older than it.
constexpr double k_clock_slack_seconds = 2.0;

struct VerbStates {
    std::set<std::string> moving;  // the step is under way in Ironic
    std::set<std::string> reached; // the step's goal (counts only if entered after the start)
    std::set<std::string> failed;  // Ironic failed the step (after the start)
};

const VerbStates* states_for(std::string_view verb)
{
    static const std::array<std::pair<std::string_view, VerbStates>, 7> k_table{{
        {"manage", {{"verifying"}, {"manageable"}, {}}},
        {"inspect", {{"inspecting", "inspect wait"}, {"manageable"}, {"inspect failed"}}},
        {"provide", {{"cleaning", "clean wait"}, {"available"}, {"clean failed"}}},
        {"clean", {{"cleaning", "clean wait"}, {"manageable"}, {"clean failed"}}},
        {"deploy", {{"deploying", "wait call-back", "deploy wait"}, {"active"}, {"deploy failed"}}},
        {"rebuild", {{"deploying", "wait call-back", "deploy wait"}, {"active"}, {"deploy failed"}}},
        {"undeploy", {{"deleting", "cleaning", "clean wait"}, {"available"}, {"clean failed", "error"}}},
    }};
    for (const auto& [name, states] : k_table) {
        if (name == verb) return &states;
    }
    return nullptr;
}

bool has_port(const ObservedNode& node, const std::string& mac)
{
    std::string wanted = mac;
    std::transform(wanted.begin(), wanted.end(), wanted.begin(), [](unsigned char c) { return std::tolower(c); });
    return std::any_of(node.ports.begin(), node.ports.end(), [&](const ObservedPort& p) { return p.mac == wanted; });
}

std::string text_of(const nlohmann::json& params, const char* key)
{
    const auto it = params.find(key);
    return it != params.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

} // namespace

const char* to_string(InterruptedOutcome outcome)
{
    switch (outcome) {
    case InterruptedOutcome::done: return "done";
    case InterruptedOutcome::failed: return "failed";
    case InterruptedOutcome::not_started: return "not-started";
    case InterruptedOutcome::unknown: return "unknown";
    }
    return "unknown";
}

std::optional<double> parse_ironic_time(std::string_view text)
{
    // YYYY-MM-DDTHH:MM:SS[.ffffff][+00:00|Z]
    if (text.size() < 19 || text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != ' ') ||
        text[13] != ':' || text[16] != ':') {
        return std::nullopt;
    }
    auto number = [&](std::size_t at, std::size_t len, int& out) {
        const auto* first = text.data() + at;
        return std::from_chars(first, first + len, out).ptr == first + len;
    };
    std::tm tm{};
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (!number(0, 4, year) || !number(5, 2, month) || !number(8, 2, day) || !number(11, 2, hour) ||
        !number(14, 2, minute) || !number(17, 2, second)) {
        return std::nullopt;
    }
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    double seconds = static_cast<double>(timegm(&tm));
    std::size_t i = 19;
    if (i < text.size() && text[i] == '.') {
        double scale = 0.1;
        for (++i; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, scale /= 10) {
            seconds += (text[i] - '0') * scale;
        }
    }
    if (i < text.size() && (text[i] == '+' || text[i] == '-') && i + 6 <= text.size() && text[i + 3] == ':') {
        int hours = 0, minutes = 0;
        if (!number(i + 1, 2, hours) || !number(i + 4, 2, minutes)) return std::nullopt;
        const double offset = hours * 3600.0 + minutes * 60.0;
        seconds += text[i] == '+' ? -offset : offset;
    }
    return seconds;
}

InterruptedResolution resolve_interrupted(std::string_view verb, const nlohmann::json& params,
                                          std::optional<double> started_at, const ObservedNode* node)
{
    using O = InterruptedOutcome;
    if (verb == "create" || verb == "adopt") {
        if (node != nullptr) return {O::done, "the node is in Ironic (" + node->provision_state + ")"};
        return {O::not_started, "no node of that name in Ironic: the request never arrived"};
    }
    if (verb == "delete") {
        if (node == nullptr) return {O::done, "the node is no longer in Ironic"};
        return {O::not_started, "the node is still in Ironic (" + node->provision_state + ")"};
    }
    if (node == nullptr) return {O::not_started, "the node is not in Ironic"};
    if (verb == "port-create" || verb == "port-delete") {
        const std::string mac = text_of(params, "address");
        if (mac.empty()) return {O::unknown, "the journal names no port address"};
        const bool present = has_port(*node, mac);
        if ((verb == "port-create") == present) {
            return {O::done, std::string("port ") + mac + (present ? " is in Ironic" : " is gone from Ironic")};
        }
        return {O::not_started, std::string("port ") + mac + (present ? " is still in Ironic" : " is not in Ironic")};
    }
    if (verb == "maintenance") {
        const auto wanted = params.find("maintenance");
        if (wanted == params.end() || !wanted->is_boolean()) return {O::unknown, "the journal names no maintenance goal"};
        if (node->maintenance == wanted->get<bool>()) {
            return {O::done, std::string("the node is ") + (node->maintenance ? "in" : "out of") + " maintenance"};
        }
        return {O::not_started, std::string("the node is still ") + (node->maintenance ? "in" : "out of") + " maintenance"};
    }
    if (verb == "power") {
        const std::string target = text_of(params, "target");
        if (target.empty()) return {O::unknown, "the journal names no power target"};
        if (node->power_state == target || node->target_power_state == target) {
            return {O::done, "the node is at or going to " + target};
        }
        return {O::not_started, "the node is " + (node->power_state.empty() ? std::string("of unknown power") : node->power_state)};
    }
    const VerbStates* states = states_for(verb);
    if (states == nullptr) {
        return {O::unknown, "whether it reached Ironic cannot be told from the node; planned again from what Ironic shows"};
    }
    const std::string& st = node->provision_state;
    const auto updated = parse_ironic_time(node->provision_updated_at);
    const bool after_start =
        started_at && updated && *updated + k_clock_slack_seconds >= *started_at;
    if (states->moving.contains(st)) return {O::done, "Ironic has the node in '" + st + "'"};
    if (verb == "manage" && st == "enroll" && after_start && !node->last_error.empty()) {
        // Ironic verifies the BMC on manage and falls back to enroll when it cannot.
        return {O::failed, "Ironic could not verify the node: " + node->last_error};
    }
    if (states->failed.contains(st) && after_start) {
        return {O::failed, "Ironic failed the step: '" + st + "'" + (node->last_error.empty() ? "" : ": " + node->last_error)};
    }
    if (states->reached.contains(st) && after_start) {
        return {O::done, "Ironic moved the node to '" + st + "' after the attempt started"};
    }
    return {O::not_started, "the node is in '" + st + "'" +
                                (after_start || !updated ? std::string() : ", unchanged since before the attempt") +
                                ": the request never arrived"};
}

} // namespace metalsync
