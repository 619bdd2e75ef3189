#include "daemon/cli_status.hpp"
#include "daemon/cli_detail.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "daemon/control_client.hpp"

namespace metalsync {

namespace cli_detail {

const json& field(const json& object, std::string_view key)
{
    static const json k_null;
    if (!object.is_object()) {
        return k_null;
    }
    auto it = object.find(key);
    return it == object.end() ? k_null : *it;
}

// Any scalar as text; null and missing are "".
std::string text_of(const json& value)
{
    if (value.is_string()) {
        return value.get<std::string>();
    }
    if (value.is_boolean()) {
        return value.get<bool>() ? "yes" : "no";
    }
    if (value.is_number() || value.is_array() || value.is_object()) {
        return value.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    return "";
}

std::string str(const json& object, std::string_view key) { return text_of(field(object, key)); }

std::optional<std::int64_t> integer(const json& value)
{
    if (value.is_number_integer()) {
        return value.get<std::int64_t>();
    }
    if (value.is_number_float()) {
        return static_cast<std::int64_t>(value.get<double>());
    }
    return std::nullopt;
}

std::optional<std::int64_t> integer(const json& object, std::string_view key) { return integer(field(object, key)); }

std::string or_dash(std::string text) { return text.empty() ? "-" : text; }

std::string short_revision(const std::string& revision)
{
    bool hex = !revision.empty() && revision.find_first_not_of("0123456789abcdef") == std::string::npos;
    return hex && revision.size() > 7 ? revision.substr(0, 7) : revision;
}

std::string truncate(const std::string& text, std::size_t max)
{
    std::string one_line = text.substr(0, text.find('\n'));
    if (one_line.size() <= max && one_line.size() == text.size()) {
        return one_line;
    }
    return one_line.substr(0, std::min(one_line.size(), max - 3)) + "...";
}

// A time field: unix seconds as a local time, a string as given.
std::string time_text(const json& value)
{
    if (auto seconds = integer(value)) {
        return format_local_time(*seconds);
    }
    return text_of(value);
}

std::string time_with_age(const json& value, std::int64_t now)
{
    if (auto seconds = integer(value)) {
        return format_local_time(*seconds) + " (" + format_relative(*seconds, now) + ")";
    }
    return text_of(value);
}

std::string age_text(const json& value, std::int64_t now)
{
    if (auto seconds = integer(value)) {
        return format_relative(*seconds, now);
    }
    return text_of(value);
}

// Columns as a terminal shows them: one per UTF-8 code point (the tree's
// box-drawing characters are three bytes each), not one per byte.
static std::size_t display_width(const std::string& text)
{
    std::size_t n = 0;
    for (unsigned char c : text) {
        if ((c & 0xC0) != 0x80) ++n;
    }
    return n;
}

std::string table(const std::vector<std::vector<std::string>>& rows, const std::string& indent)
{
    std::vector<std::size_t> width;
    for (const auto& row : rows) {
        width.resize(std::max(width.size(), row.size()));
        for (std::size_t i = 0; i < row.size(); ++i) {
            width[i] = std::max(width[i], display_width(row[i]));
        }
    }
    std::string out;
    for (const auto& row : rows) {
        std::string line = indent;
        for (std::size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) {
                line += std::string(width[i] - display_width(row[i]) + 2, ' ');
            }
        }
        line.erase(line.find_last_not_of(' ') + 1);
        out += line + "\n";
    }
    return out;
}

std::string key_values(const std::vector<std::pair<std::string, std::string>>& rows)
{
    std::size_t width = 0;
    for (const auto& [key, value] : rows) {
        width = std::max(width, key.size());
    }
    std::string out;
    for (const auto& [key, value] : rows) {
        out += key + ":" + std::string(width - key.size() + 2, ' ') + value + "\n";
    }
    return out;
}

std::string list_text(const json& value, const std::string& separator)
{
    if (!value.is_array()) {
        return text_of(value);
    }
    std::string out;
    for (const auto& item : value) {
        out += (out.empty() ? "" : separator) + text_of(item);
    }
    return out;
}

std::int64_t now_seconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string socket_of(const ClientOptions& options)
{
    return options.socket.empty() ? default_control_socket() : options.socket;
}

// The command a user typed for each socket command: messages name it, never the protocol's.
std::string_view cli_command_of(std::string_view command)
{
    static const std::map<std::string_view, std::string_view> names = {
        {"status-get", "status"},        {"revision-get", "status"},     {"node-list", "nodes"},
        {"node-get", "node"},            {"event-list", "events"},       {"plan-get", "plan"},
        {"reconcile-now", "sync"},       {"suspend", "suspend"},         {"resume", "resume"},
        {"config-reload", "reload"},     {"version-get", "version"},     {"cluster-list", "clusters"},
        {"cluster-get", "cluster"},      {"kube-object-list", "objects"},
    };
    auto it = names.find(command);
    return it == names.end() ? command : it->second;
}

CallOutcome call_daemon(const ClientOptions& options, std::string_view command, const json& arguments)
{
    auto reply = ControlClient{}.call(socket_of(options), command, arguments);
    if (!reply) {
        std::cerr << "metalsync: " << reply.error() << "\n";
        return {std::nullopt, k_exit_unreachable};
    }
    const std::string_view shown = cli_command_of(command);
    if (reply->result == k_result_empty && reply->arguments.is_object() &&
        (command.ends_with("-list") || command == "plan-get")) {
        // An empty listing is an answer, not a failure (as kubectl's "No
        // resources found"): said on stderr, exit 0, the empty list rendered.
        std::cerr << "metalsync " << shown << ": " << reply->text << "\n";
        return {std::move(*reply), k_exit_ok};
    }
    if (reply->result != 0) {
        std::cerr << "metalsync " << shown << ": "
                  << (reply->text.empty() ? "result " + std::to_string(reply->result) : reply->text) << "\n";
        return {std::move(*reply), k_exit_answered_error};
    }
    return {std::move(*reply), k_exit_ok};
}

void print_json(const ControlReply& reply)
{
    json out = reply.arguments;
    if (out.is_null()) {
        out = {{"result", reply.result}, {"text", reply.text}};
    }
    std::cout << out.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
}

bool is_json(const ClientOptions& options) { return options.output == "json"; }

} // namespace cli_detail

using namespace cli_detail;

std::string default_control_socket()
{
    const char* env = std::getenv("METALSYNC_SOCKET");
    return env != nullptr && *env != '\0' ? std::string(env) : std::string(k_default_control_socket);
}

std::string format_local_time(std::int64_t unix_seconds)
{
    auto t = static_cast<std::time_t>(unix_seconds);
    std::tm local{};
    if (::localtime_r(&t, &local) == nullptr) {
        return std::to_string(unix_seconds);
    }
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &local);
    return buf;
}

std::string format_duration(std::int64_t seconds)
{
    seconds = std::max<std::int64_t>(seconds, 0);
    auto d = seconds / 86400;
    auto h = seconds % 86400 / 3600;
    auto m = seconds % 3600 / 60;
    auto s = seconds % 60;
    if (d > 0) {
        return std::to_string(d) + "d" + (h > 0 ? std::to_string(h) + "h" : "");
    }
    if (h > 0) {
        return std::to_string(h) + "h" + (m > 0 ? std::to_string(m) + "m" : "");
    }
    if (m > 0) {
        return std::to_string(m) + "m" + (s > 0 ? std::to_string(s) + "s" : "");
    }
    return std::to_string(s) + "s";
}

std::string format_relative(std::int64_t then, std::int64_t now)
{
    return then <= now ? format_duration(now - then) + " ago" : "in " + format_duration(then - now);
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text)
{
    if (text.empty()) {
        return std::nullopt;
    }
    if (text.find_first_not_of("0123456789.") == std::string_view::npos) {
        char* end = nullptr;
        std::string copy(text);
        double seconds = std::strtod(copy.c_str(), &end);
        if (end != copy.c_str() + copy.size() || seconds < 0) {
            return std::nullopt;
        }
        return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
    }
    std::chrono::milliseconds total{0};
    while (!text.empty()) {
        std::int64_t value = 0;
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc() || ptr == text.data()) {
            return std::nullopt;
        }
        text.remove_prefix(static_cast<std::size_t>(ptr - text.data()));
        std::size_t unit_len = 0;
        while (unit_len < text.size() && std::isalpha(static_cast<unsigned char>(text[unit_len])) != 0) {
            ++unit_len;
        }
        std::string_view unit = text.substr(0, unit_len);
        text.remove_prefix(unit_len);
        if (unit == "ms") {
            total += std::chrono::milliseconds(value);
        } else if (unit == "s") {
            total += std::chrono::seconds(value);
        } else if (unit == "m") {
            total += std::chrono::minutes(value);
        } else if (unit == "h") {
            total += std::chrono::hours(value);
        } else if (unit == "d") {
            total += std::chrono::hours(24 * value);
        } else {
            return std::nullopt;
        }
    }
    return total;
}

std::optional<std::int64_t> parse_since(std::string_view text, std::int64_t now)
{
    if (text.starts_with("@")) {
        std::int64_t value = 0;
        auto [ptr, ec] = std::from_chars(text.data() + 1, text.data() + text.size(), value);
        if (ec != std::errc() || ptr != text.data() + text.size()) {
            return std::nullopt;
        }
        return value;
    }
    if (auto duration = parse_duration(text)) {
        return now - std::chrono::duration_cast<std::chrono::seconds>(*duration).count();
    }
    std::string copy(text);
    std::replace(copy.begin(), copy.end(), 'T', ' ');
    std::tm tm{};
    int consumed = 0;
    int fields = std::sscanf(copy.c_str(), "%d-%d-%d%n %d:%d%n:%d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                             &consumed, &tm.tm_hour, &tm.tm_min, &consumed, &tm.tm_sec, &consumed);
    if ((fields != 3 && fields != 5 && fields != 6) || static_cast<std::size_t>(consumed) != copy.size()) {
        return std::nullopt;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    std::time_t t = std::mktime(&tm);
    if (t == static_cast<std::time_t>(-1)) {
        return std::nullopt;
    }
    return static_cast<std::int64_t>(t);
}

// Settled: at its goal (claimed nodes included: the provider drives them),
// in maintenance as Git asks, or orphaned (outside Git with prune off:
// nothing is planned for it). Converged: a revision in force and every node
// settled.
bool status_converged(const nlohmann::json& arguments)
{
    const json& nodes = field(arguments, "nodes");
    auto total = integer(nodes, "total");
    auto at_goal = integer(nodes, "atGoal");
    if (str(arguments, "revision").empty() || !total || !at_goal) return false;
    const json& by = field(nodes, "byCondition");
    const auto settled_elsewhere = integer(by, "maintenance").value_or(0) + integer(by, "orphaned").value_or(0);
    return *total == *at_goal + settled_elsewhere;
}

// Nodes that will not converge without a person: failed (out of attempts,
// or refused by Ironic) or held by the mass-deletion guard.
bool status_stuck(const nlohmann::json& arguments)
{
    const json& by = field(field(arguments, "nodes"), "byCondition");
    return integer(by, "failed").value_or(0) + integer(by, "held").value_or(0) > 0;
}

namespace {

// "metalsync: not converged: n3 failed: ..." for each node holding it up.
void name_unsettled_nodes(const std::string& socket, const char* why)
{
    auto reply = ControlClient{}.call(socket, "node-list", json());
    if (!reply || reply->result != 0) return;
    const json& nodes = field(reply->arguments, "nodes");
    if (!nodes.is_array()) return;
    int shown = 0;
    for (const auto& n : nodes) {
        const std::string condition = str(n, "condition");
        if (condition == "at-goal" || condition == "claimed" || condition == "maintenance" || condition == "orphaned") {
            continue;
        }
        if (++shown > 20) {
            std::cerr << "metalsync: ... and more (metalsync nodes)\n";
            break;
        }
        std::cerr << "metalsync: " << why << ": " << str(n, "name") << " " << condition
                  << (str(n, "message").empty() ? "" : ": " + str(n, "message")) << "\n";
    }
}

} // namespace

std::string render_status(const nlohmann::json& arguments, std::string_view text, std::int64_t now)
{
    std::string out;
    if (!text.empty()) {
        out += std::string(text) + "\n\n";
    }
    std::vector<std::pair<std::string, std::string>> rows;
    std::string revision = str(arguments, "revision");
    if (revision.empty()) {
        rows.emplace_back("Revision", "none accepted yet");
    } else {
        std::string line = short_revision(revision);
        if (auto summary = str(arguments, "revisionSummary"); !summary.empty()) {
            line += "  \"" + truncate(summary, 60) + "\"";
        }
        if (auto author = str(arguments, "revisionAuthor"); !author.empty()) {
            line += "  (" + author + ")";
        }
        rows.emplace_back("Revision", line);
    }
    const json& last_poll = field(arguments, "lastPoll");
    rows.emplace_back("Last poll", last_poll.is_null() ? "never" : time_with_age(last_poll, now));
    if (auto git_error = str(arguments, "gitError"); !git_error.empty()) {
        rows.emplace_back("Git error", git_error);
    }
    if (auto ironic_error = str(arguments, "ironicError"); !ironic_error.empty()) {
        rows.emplace_back("Ironic error", ironic_error);
        const json& outage = field(arguments, "ironicOutage");
        if (outage.is_object()) {
            std::string line = "unreachable since " + time_with_age(field(outage, "since"), now);
            if (auto failures = integer(field(outage, "failedObservations"))) {
                line += "; " + std::to_string(*failures) + " failed observations, next " +
                        age_text(field(outage, "nextAttempt"), now) + " (metalsync sync tries now)";
            }
            rows.emplace_back("Ironic outage", line);
        }
    }
    if (const json& since = field(arguments, "gitPollingSince"); !since.is_null()) {
        if (auto started = integer(since); started && now - *started >= 5) {
            rows.emplace_back("Git poll", "running since " + time_with_age(since, now));
        }
    }
    if (auto store_error = str(arguments, "storeError"); !store_error.empty()) {
        rows.emplace_back("Store error", store_error);
    }
    const json& rejected = field(arguments, "rejected");
    if (rejected.is_object()) {
        const json& errors = field(rejected, "errors");
        std::size_t count = errors.is_array() ? errors.size() : 0;
        rows.emplace_back("Rejected", "commit " + or_dash(short_revision(str(rejected, "commit"))) + ", " +
                                          std::to_string(count) + (count == 1 ? " error" : " errors") +
                                          " (still applying the last good revision)");
    }
    rows.emplace_back("Reconciling", field(arguments, "suspended") == true ? "suspended" : "active");
    const json& nodes = field(arguments, "nodes");
    if (nodes.is_object()) {
        rows.emplace_back("Nodes", or_dash(str(nodes, "total")) + " total, " + or_dash(str(nodes, "atGoal")) +
                                       " at goal");
    }
    const json& executor = field(arguments, "executor");
    if (executor.is_object()) {
        std::string line = or_dash(str(executor, "queued")) + " queued, " + or_dash(str(executor, "running")) +
                           " running";
        if (auto saturated = list_text(field(executor, "saturated")); !saturated.empty()) {
            line += "; at limit: " + saturated;
        }
        rows.emplace_back("Actions", line);
    }
    if (auto held = str(arguments, "massDeletionHeld"); !held.empty()) {
        rows.emplace_back("Deletion held", held);
    }
    const json& kube = field(arguments, "kubernetes");
    if (kube.is_object() && (field(kube, "enabled") == true || !str(kube, "error").empty())) {
        std::string line;
        const json& objects = field(kube, "objects");
        line = or_dash(str(objects, "total")) + " objects";
        if (const json& by_state = field(objects, "byState"); by_state.is_object()) {
            for (const auto& [state, count] : by_state.items()) line += ", " + text_of(count) + " " + state;
        }
        const json& clusters = field(kube, "clusters");
        if (clusters.is_array()) {
            line += "; " + std::to_string(clusters.size()) + (clusters.size() == 1 ? " cluster" : " clusters");
            for (const auto& c : clusters) {
                line += " (" + str(c, "name") + ": " + or_dash(str(c, "phase")) +
                        (field(c, "deleting") == true ? ", deleting" : "") + ")";
            }
        }
        rows.emplace_back("Kubernetes", line);
        if (auto error = str(kube, "error"); !error.empty()) rows.emplace_back("Kubernetes error", error);
    }
    out += key_values(rows);
    if (rejected.is_object() && field(rejected, "errors").is_array()) {
        for (const auto& error : field(rejected, "errors")) {
            out += "  " + text_of(error) + "\n";
        }
    }
    for (auto [key, title] : {std::pair{"byCondition", "CONDITION"}, std::pair{"byState", "STATE"}}) {
        const json& counts = field(nodes, key);
        if (!counts.is_object() || counts.empty()) {
            continue;
        }
        std::vector<std::vector<std::string>> table_rows{{title, "NODES"}};
        for (const auto& [name, count] : counts.items()) {
            table_rows.push_back({name, text_of(count)});
        }
        out += "\n" + table(table_rows);
    }
    return out;
}

std::string render_node_list(const nlohmann::json& arguments, std::string_view condition, std::int64_t now)
{
    const json& nodes = field(arguments, "nodes");
    std::vector<std::vector<std::string>> rows{{"NAME", "STATE", "GOAL", "CONDITION", "SINCE", "ATTEMPTS", "MESSAGE"}};
    if (nodes.is_array()) {
        for (const auto& node : nodes) {
            std::string node_condition = str(node, "condition");
            if (!condition.empty() && node_condition != condition) {
                continue;
            }
            if (field(node, "suspended") == true) {
                node_condition += " (suspended)";
            }
            std::string message = str(node, "message");
            if (message.empty()) {
                message = str(node, "lastError");
            }
            rows.push_back({or_dash(str(node, "name")), or_dash(str(node, "provisionState")),
                            or_dash(str(node, "goal")), or_dash(node_condition),
                            or_dash(age_text(field(node, "since"), now)), or_dash(str(node, "attempts")),
                            truncate(message, 80)});
        }
    }
    if (rows.size() == 1) {
        return condition.empty() ? "No nodes.\n" : "No nodes with condition " + std::string(condition) + ".\n";
    }
    return table(rows);
}

std::string render_node(const nlohmann::json& arguments, std::int64_t now)
{
    const json& node = field(arguments, "node");
    std::string out = "Node " + or_dash(str(node, "name")) + "\n";
    std::vector<std::pair<std::string, std::string>> rows;
    auto add = [&rows](const std::string& key, const std::string& value) {
        if (!value.empty()) {
            rows.emplace_back("  " + key, value);
        }
    };
    add("UUID", str(node, "uuid"));
    const json& bmc = field(node, "bmc");
    if (bmc.is_object()) {
        std::string line = str(bmc, "driver");
        if (auto address = str(bmc, "address"); !address.empty()) {
            line += (line.empty() ? "" : " ") + address;
        }
        add("BMC", line);
    } else {
        add("BMC", text_of(bmc));
    }
    std::string state = or_dash(str(node, "provisionState"));
    if (auto goal = str(node, "goal"); !goal.empty()) {
        state += " (goal " + goal + ")";
    }
    add("State", state);
    std::string power = str(node, "powerState");
    if (auto goal = str(node, "powerGoal"); !goal.empty()) {
        power = (power.empty() ? "-" : power) + " (goal " + goal + ")";
    }
    add("Power", power);
    if (field(node, "maintenance") == true) {
        auto reason = str(node, "maintenanceReason");
        add("Maintenance", "on" + (reason.empty() ? std::string() : ": " + reason));
    }
    std::string condition = str(node, "condition");
    if (auto since = field(node, "since"); !since.is_null()) {
        condition += (condition.empty() ? "since " : " since ") + time_with_age(since, now);
    }
    add("Condition", condition);
    if (field(node, "suspended") == true) {
        add("Suspended", "yes (resume with: metalsync resume " + str(node, "name") + ")");
    }
    add("Message", str(node, "message"));
    std::string error = str(node, "lastError");
    if (auto type = str(node, "lastErrorType"); !type.empty()) {
        error = error.empty() ? type : type + ": " + error;
    }
    add("Last error", error);
    std::string attempts = str(node, "attempts");
    if (auto next = field(node, "nextAttemptAt"); !next.is_null()) {
        attempts += (attempts.empty() ? "next " : ", next ") + time_with_age(next, now);
    }
    add("Attempts", attempts);
    std::string waiting = list_text(field(node, "waitingOn"));
    if (auto position = str(node, "queuePosition"); !position.empty()) {
        waiting += (waiting.empty() ? "queue position " : " (queue position ") + position +
                   (waiting.empty() ? "" : ")");
    }
    add("Waiting on", waiting);
    if (const json& inspection = field(node, "inspection"); inspection.is_object()) {
        add("Inspected", str(inspection, "summary"));
        if (field(inspection, "matches").is_boolean()) {
            std::string check = field(inspection, "matches") == true
                                    ? "matches"
                                    : "MISMATCH: " + list_text(field(inspection, "mismatches"), "; ");
            if (const json& unchecked = field(inspection, "unchecked"); unchecked.is_array() && !unchecked.empty()) {
                check += "; " + list_text(unchecked, "; ");
            }
            add("Expect", check);
        }
    }
    out += key_values(rows);

    const json& events = field(arguments, "events");
    out += "\nRecent events:\n";
    if (events.is_array() && !events.empty()) {
        std::vector<std::vector<std::string>> table_rows{{"TIME", "EVENT", "MESSAGE", "REVISION", "AUTHOR"}};
        for (const auto& event : events) {
            table_rows.push_back({or_dash(time_text(field(event, "time"))), or_dash(str(event, "name")),
                                  or_dash(truncate(str(event, "message"), 80)),
                                  or_dash(short_revision(str(event, "revision"))), or_dash(str(event, "author"))});
        }
        out += table(table_rows, "  ");
    } else {
        out += "  none\n";
    }
    const json& actions = field(arguments, "actions");
    out += "\nRecent actions:\n";
    if (actions.is_array() && !actions.empty()) {
        std::vector<std::vector<std::string>> table_rows{
            {"ID", "VERB", "STATE", "CREATED", "FINISHED", "RESULT", "REVISION", "AUTHOR"}};
        for (const auto& action : actions) {
            table_rows.push_back({or_dash(str(action, "id")), or_dash(str(action, "verb")),
                                  or_dash(str(action, "state")), or_dash(time_text(field(action, "createdAt"))),
                                  or_dash(time_text(field(action, "finishedAt"))),
                                  or_dash(truncate(str(action, "result"), 60)),
                                  or_dash(short_revision(str(action, "revision"))), or_dash(str(action, "author"))});
        }
        out += table(table_rows, "  ");
    } else {
        out += "  none\n";
    }
    return out;
}

nlohmann::json filter_events(const nlohmann::json& arguments, std::string_view object,
                             std::optional<std::int64_t> since, int limit)
{
    json kept = json::array();
    const json& events = field(arguments, "events");
    if (events.is_array()) {
        for (const auto& event : events) {
            if (!object.empty() && str(event, "objectName") != object) {
                continue;
            }
            auto time = integer(event, "time");
            if (since && time && *time < *since) {
                continue;
            }
            kept.push_back(event);
        }
    }
    std::stable_sort(kept.begin(), kept.end(), [](const json& a, const json& b) {
        return integer(a, "time").value_or(0) < integer(b, "time").value_or(0);
    });
    if (limit > 0 && kept.size() > static_cast<std::size_t>(limit)) {
        kept.erase(kept.begin(), kept.begin() + static_cast<std::ptrdiff_t>(kept.size() - static_cast<std::size_t>(limit)));
    }
    return json{{"events", kept}};
}

std::string render_events(const nlohmann::json& arguments, std::int64_t now)
{
    const json& events = field(arguments, "events");
    if (!events.is_array() || events.empty()) {
        return "No events.\n";
    }
    std::vector<std::vector<std::string>> rows{{"TIME", "AGE", "OBJECT", "EVENT", "MESSAGE", "REVISION", "AUTHOR"}};
    for (const auto& event : events) {
        std::string object = str(event, "objectName");
        if (auto kind = str(event, "objectKind"); !kind.empty()) {
            object = kind + "/" + object;
        }
        rows.push_back({or_dash(time_text(field(event, "time"))), or_dash(age_text(field(event, "time"), now)),
                        or_dash(object), or_dash(str(event, "name")), or_dash(truncate(str(event, "message"), 80)),
                        or_dash(short_revision(str(event, "revision"))), or_dash(str(event, "author"))});
    }
    return table(rows);
}

std::string render_daemon_plan(const nlohmann::json& arguments)
{
    const json& actions = field(arguments, "actions");
    if (!actions.is_array() || actions.empty()) {
        return "No changes: every node is at its goal or waiting on an action in progress.\n";
    }
    std::vector<std::vector<std::string>> rows{{"NODE", "ACTION", "REASON"}};
    for (const auto& action : actions) {
        rows.push_back({or_dash(str(action, "node")), or_dash(str(action, "verb")), or_dash(str(action, "reason"))});
    }
    return table(rows) + "\n" + std::to_string(actions.size()) + (actions.size() == 1 ? " action" : " actions") +
           " planned.\n";
}

int run_status(const StatusOptions& options)
{
    bool watch = options.watch || options.until_converged;
    if (!watch) {
        auto outcome = call_daemon(options.client, "status-get");
        if (outcome.exit_code != k_exit_ok) {
            return outcome.exit_code;
        }
        if (is_json(options.client)) {
            print_json(*outcome.reply);
        } else {
            std::cout << render_status(outcome.reply->arguments, outcome.reply->text, now_seconds());
        }
        return k_exit_ok;
    }
    auto interval = parse_duration(options.interval);
    if (!interval || interval->count() <= 0) {
        std::cerr << "metalsync: --interval: not a duration: " << options.interval << "\n";
        return k_exit_unreachable;
    }
    std::optional<std::chrono::steady_clock::time_point> deadline;
    if (!options.timeout.empty()) {
        auto timeout = parse_duration(options.timeout);
        if (!timeout) {
            std::cerr << "metalsync: --timeout: not a duration: " << options.timeout << "\n";
            return k_exit_unreachable;
        }
        deadline = std::chrono::steady_clock::now() + *timeout;
    }
    const bool tty = ::isatty(STDOUT_FILENO) == 1;
    const std::string socket = socket_of(options.client);
    std::string last_line;
    while (true) {
        auto reply = ControlClient{}.call(socket, "status-get", json(), std::max(*interval, std::chrono::milliseconds(5000)));
        bool reachable = reply.has_value();
        bool converged = reachable && reply->result == 0 && status_converged(reply->arguments);
        std::string line;  // what a non-terminal gets, once per change
        std::string frame;
        if (!reachable) {
            line = "metalsync: " + reply.error() + " (retrying)";
            frame = line + "\n";
        } else if (reply->result != 0) {
            line = "metalsync: status-get: " + reply->text;
            frame = line + "\n";
        } else if (is_json(options.client)) {
            line = reply->arguments.dump(-1, ' ', false, json::error_handler_t::replace);
        } else {
            line = reply->text.empty() ? render_status(reply->arguments, "", now_seconds()) : reply->text;
            frame = render_status(reply->arguments, reply->text, now_seconds());
        }
        if (is_json(options.client) && reachable && reply->result == 0) {
            std::cout << line << "\n" << std::flush;  // JSON lines: one object per poll
        } else if (tty) {
            std::cout << "\033[H\033[2J" << "Every " << format_duration(std::max<std::int64_t>(interval->count() / 1000, 1))
                      << ": metalsync status    " << format_local_time(now_seconds()) << "\n\n"
                      << frame << std::flush;
        } else if (line != last_line) {
            std::cout << format_local_time(now_seconds()) << "  " << line << "\n" << std::flush;
        }
        last_line = line;
        if (options.until_converged && converged) {
            return k_exit_ok;
        }
        if (options.until_converged && reachable && reply->result == 0 && status_stuck(reply->arguments)) {
            // A failed or held node never converges by waiting: say which, now.
            name_unsettled_nodes(socket, "not converging");
            return k_exit_answered_error;
        }
        auto sleep = std::chrono::duration_cast<std::chrono::steady_clock::duration>(*interval);
        if (deadline) {
            auto now = std::chrono::steady_clock::now();
            if (now >= *deadline) {
                std::cerr << "metalsync: not converged within " << options.timeout << "\n";
                if (reachable) name_unsettled_nodes(socket, "still waiting");
                return reachable ? k_exit_answered_error : k_exit_unreachable;
            }
            sleep = std::min(sleep, *deadline - now);
        }
        std::this_thread::sleep_for(sleep);
    }
}

int run_nodes(const NodesOptions& options)
{
    auto outcome = call_daemon(options.client, "node-list");
    if (outcome.exit_code != k_exit_ok) {
        return outcome.exit_code;
    }
    if (is_json(options.client)) {
        json arguments = outcome.reply->arguments;
        if (!options.condition.empty() && field(arguments, "nodes").is_array()) {
            json kept = json::array();
            for (const auto& node : arguments["nodes"]) {
                if (str(node, "condition") == options.condition) {
                    kept.push_back(node);
                }
            }
            arguments["nodes"] = kept;
        }
        std::cout << arguments.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
        return k_exit_ok;
    }
    std::cout << render_node_list(outcome.reply->arguments, options.condition, now_seconds());
    return k_exit_ok;
}

int run_node(const NodeOptions& options)
{
    auto outcome = call_daemon(options.client, "node-get", json{{"name", options.name}});
    if (outcome.exit_code != k_exit_ok) {
        return outcome.exit_code;
    }
    if (is_json(options.client)) {
        print_json(*outcome.reply);
    } else {
        std::cout << render_node(outcome.reply->arguments, now_seconds());
    }
    return k_exit_ok;
}

int run_events(const EventsOptions& options)
{
    json arguments = json::object();
    std::optional<std::int64_t> since;
    if (!options.since.empty()) {
        since = parse_since(options.since, now_seconds());
        if (!since) {
            std::cerr << "metalsync: --since: expected a duration (10m, 2h) or a time (2026-11-25 14:03), got "
                      << options.since << "\n";
            return k_exit_unreachable;
        }
        arguments["since"] = *since;
    }
    if (!options.object.empty()) {
        arguments["object"] = options.object;
    }
    if (options.limit > 0) {
        arguments["limit"] = options.limit;
    }
    auto outcome = call_daemon(options.client, "event-list", arguments);
    if (outcome.exit_code != k_exit_ok) {
        return outcome.exit_code;
    }
    json events = filter_events(outcome.reply->arguments, options.object, since, options.limit);
    if (is_json(options.client)) {
        std::cout << events.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    } else {
        std::cout << render_events(events, now_seconds());
    }
    return k_exit_ok;
}

int run_daemon_plan(const ClientOptions& options)
{
    auto outcome = call_daemon(options, "plan-get");
    if (outcome.exit_code != k_exit_ok) {
        return 2;  // plan's codes: 0 no changes, 1 changes, 2 could not plan
    }
    if (is_json(options)) {
        print_json(*outcome.reply);
    } else {
        std::cout << render_daemon_plan(outcome.reply->arguments);
    }
    const json& actions = field(outcome.reply->arguments, "actions");
    return actions.is_array() && !actions.empty() ? 1 : 0;
}

int run_sync(const ClientOptions& options)
{
    auto outcome = call_daemon(options, "reconcile-now");
    if (outcome.exit_code != k_exit_ok) {
        return outcome.exit_code;
    }
    if (is_json(options)) {
        print_json(*outcome.reply);
    } else {
        std::cout << (outcome.reply->text.empty() ? "reconcile requested" : outcome.reply->text) << "\n";
    }
    return k_exit_ok;
}

int run_suspend(const NodeActionOptions& options, bool resume)
{
    json arguments;
    if (!options.name.empty()) {
        arguments = json{{"name", options.name}};
    }
    const char* command = resume ? "resume" : "suspend";
    auto outcome = call_daemon(options.client, command, arguments);
    if (outcome.exit_code != k_exit_ok) {
        return outcome.exit_code;
    }
    if (is_json(options.client)) {
        print_json(*outcome.reply);
    } else {
        std::string fallback = std::string(resume ? "resumed " : "suspended ") +
                               (options.name.empty() ? "reconciling" : options.name);
        std::cout << (outcome.reply->text.empty() ? fallback : outcome.reply->text) << "\n";
    }
    return k_exit_ok;
}

int run_version(const ClientOptions& options)
{
    auto reply = ControlClient{}.call(socket_of(options), "version-get", json(), std::chrono::seconds(2));
    std::string daemon;
    if (reply && reply->result == 0) {
        daemon = str(reply->arguments, "version");
        if (daemon.empty()) {
            daemon = reply->text;
        }
    }
    if (is_json(options)) {
        json out = {{"version", METALSYNC_VERSION}, {"daemon", nullptr}};
        if (reply && reply->result == 0) {
            out["daemon"] = reply->arguments.is_null() ? json(reply->text) : reply->arguments;
        }
        std::cout << out.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
        return k_exit_ok;
    }
    std::cout << "metalsync " << METALSYNC_VERSION << "\n";
    if (!daemon.empty()) {
        std::cout << "daemon: " << (daemon.starts_with("metalsync") ? daemon : "metalsync " + daemon) << "\n";
    }
    return k_exit_ok;
}

} // namespace metalsync
