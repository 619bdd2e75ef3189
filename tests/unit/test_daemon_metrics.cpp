// Metrics: the registry's text exposition read back by a strict parser
// written here from the 0.0.4 format description, DaemonMetrics' families,
// and the HTTP listener scraped over real TCP by curl and by raw sockets
// (slow, oversized and abandoned clients).

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "daemon/metrics.hpp"
#include "daemon/metrics_server.hpp"
#include "tests/support/test_support.hpp"

using namespace metalsync;
using namespace metalsync::test;
using metrics::Registry;

namespace {

// ---------------------------------------------------------------------------
// A strict reader of the text exposition format 0.0.4.

struct Sample {
    std::string name;
    std::vector<std::pair<std::string, std::string>> labels; // unescaped values
    double value = 0;
    std::string raw_value;

    [[nodiscard]] std::string label(const std::string& key) const
    {
        for (const auto& [k, v] : labels) {
            if (k == key) return v;
        }
        return "<absent>";
    }
};

struct Exposition {
    std::map<std::string, std::string> types;
    std::map<std::string, std::string> helps; // unescaped
    std::vector<Sample> samples;
    std::vector<std::string> family_order; // as first seen
    std::vector<std::string> errors;

    [[nodiscard]] std::vector<Sample> find(const std::string& name) const
    {
        std::vector<Sample> out;
        for (const auto& s : samples) {
            if (s.name == name) out.push_back(s);
        }
        return out;
    }
    [[nodiscard]] std::optional<double> value(const std::string& name,
                                              const std::vector<std::pair<std::string, std::string>>& labels = {}) const
    {
        for (const auto& s : samples) {
            if (s.name == name && s.labels == labels) return s.value;
        }
        return std::nullopt;
    }
};

bool metric_name_ok(std::string_view n)
{
    if (n.empty()) return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        char c = n[i];
        if (!(std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
              (i > 0 && std::isdigit(static_cast<unsigned char>(c))))) {
            return false;
        }
    }
    return true;
}

bool label_name_ok(std::string_view n)
{
    if (n.empty() || n.starts_with("__")) return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        char c = n[i];
        if (!(std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
              (i > 0 && std::isdigit(static_cast<unsigned char>(c))))) {
            return false;
        }
    }
    return true;
}

bool utf8_ok(std::string_view s)
{
    for (std::size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (len == 0 || i + len > s.size()) return false;
        for (std::size_t k = 1; k < len; ++k) {
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
        }
        i += len;
    }
    return true;
}

std::optional<double> parse_float(const std::string& text)
{
    if (text == "NaN") return std::nan("");
    if (text == "+Inf") return HUGE_VAL;
    if (text == "-Inf") return -HUGE_VAL;
    if (text.empty()) return std::nullopt;
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size()) return std::nullopt;
    // strtod also takes "inf", "nan", hex floats: the format does not.
    for (char c : text) {
        if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == 'E' || c == '+' ||
              c == '-')) {
            return std::nullopt;
        }
    }
    return v;
}

// `allow_quote_escape`: label values escape \" too; HELP text does not.
std::optional<std::string> unescape(std::string_view text, bool allow_quote_escape)
{
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\\') {
            out += text[i];
            continue;
        }
        if (++i >= text.size()) return std::nullopt;
        char e = text[i];
        if (e == '\\')
            out += '\\';
        else if (e == 'n')
            out += '\n';
        else if (e == '"' && allow_quote_escape)
            out += '"';
        else
            return std::nullopt;
    }
    return out;
}

std::string family_of(const Exposition& e, const std::string& sample)
{
    if (e.types.contains(sample)) return sample;
    for (std::string suffix : {"_bucket", "_sum", "_count"}) {
        if (sample.ends_with(suffix)) {
            auto base = sample.substr(0, sample.size() - suffix.size());
            auto it = e.types.find(base);
            if (it != e.types.end() &&
                (it->second == "histogram" || (it->second == "summary" && suffix != "_bucket"))) {
                return base;
            }
        }
    }
    return "";
}

Exposition parse_exposition(const std::string& text)
{
    Exposition e;
    auto fail = [&](std::size_t line_no, const std::string& line, const std::string& why) {
        e.errors.push_back("line " + std::to_string(line_no) + ": " + why + ": [" + line + "]");
    };
    if (!text.empty() && text.back() != '\n') e.errors.push_back("does not end with a newline");
    if (!utf8_ok(text)) e.errors.push_back("not valid UTF-8");
    std::istringstream in(text);
    std::string line;
    std::size_t line_no = 0;
    std::string current_family;
    std::set<std::string> finished_families;
    while (std::getline(in, line)) {
        ++line_no;
        if (line.empty()) {
            fail(line_no, line, "empty line");
            continue;
        }
        if (line[0] == '#') {
            std::istringstream words(line);
            std::string hash;
            std::string kind;
            std::string name;
            words >> hash >> kind >> name;
            if (hash != "#" || (kind != "HELP" && kind != "TYPE") || !metric_name_ok(name)) {
                fail(line_no, line, "comment that is not # HELP or # TYPE with a valid name");
                continue;
            }
            auto prefix = "# " + kind + " " + name + " ";
            if (!line.starts_with(prefix)) {
                fail(line_no, line, "HELP/TYPE without exactly one space before the text");
                continue;
            }
            std::string rest = line.substr(prefix.size());
            if (current_family != name) {
                if (finished_families.contains(name)) fail(line_no, line, "family " + name + " split in two groups");
                if (!current_family.empty()) finished_families.insert(current_family);
                current_family = name;
                e.family_order.push_back(name);
            }
            if (kind == "TYPE") {
                static const std::set<std::string> types{"counter", "gauge", "histogram", "summary", "untyped"};
                if (!types.contains(rest)) fail(line_no, line, "unknown type");
                if (e.types.contains(name)) fail(line_no, line, "second TYPE for " + name);
                for (const auto& s : e.samples) {
                    if (family_of(e, s.name) == name) fail(line_no, line, "TYPE after samples of " + name);
                }
                e.types[name] = rest;
            } else {
                auto help = unescape(rest, false);
                if (!help) fail(line_no, line, "bad escape in HELP");
                if (e.helps.contains(name)) fail(line_no, line, "second HELP for " + name);
                e.helps[name] = help.value_or("");
            }
            continue;
        }
        Sample s;
        std::size_t i = 0;
        while (i < line.size() && line[i] != '{' && line[i] != ' ')
            ++i;
        s.name = line.substr(0, i);
        if (!metric_name_ok(s.name)) {
            fail(line_no, line, "invalid metric name");
            continue;
        }
        bool bad = false;
        if (i < line.size() && line[i] == '{') {
            ++i;
            std::set<std::string> seen;
            while (i < line.size() && line[i] != '}') {
                auto eq = line.find('=', i);
                if (eq == std::string::npos) {
                    bad = true;
                    break;
                }
                std::string lname = line.substr(i, eq - i);
                if (!label_name_ok(lname) || !seen.insert(lname).second) {
                    fail(line_no, line, "invalid or repeated label name '" + lname + "'");
                    bad = true;
                    break;
                }
                if (eq + 1 >= line.size() || line[eq + 1] != '"') {
                    bad = true;
                    break;
                }
                std::size_t j = eq + 2;
                std::string raw;
                while (j < line.size() && line[j] != '"') {
                    if (line[j] == '\\' && j + 1 < line.size()) {
                        raw += line[j];
                        ++j;
                    }
                    raw += line[j];
                    ++j;
                }
                if (j >= line.size()) {
                    bad = true;
                    break;
                }
                auto value = unescape(raw, true);
                if (!value) {
                    fail(line_no, line, "bad escape in label value");
                    bad = true;
                    break;
                }
                s.labels.emplace_back(lname, *value);
                i = j + 1;
                if (i < line.size() && line[i] == ',') {
                    ++i;
                    if (i < line.size() && line[i] == '}') {
                        bad = true; // we never write a trailing comma
                        break;
                    }
                } else if (i < line.size() && line[i] != '}') {
                    bad = true;
                    break;
                }
            }
            if (bad || i >= line.size()) {
                fail(line_no, line, "malformed label set");
                continue;
            }
            ++i; // '}'
        }
        if (i >= line.size() || line[i] != ' ') {
            fail(line_no, line, "no single space before the value");
            continue;
        }
        std::string value_text = line.substr(i + 1);
        if (value_text.find(' ') != std::string::npos) {
            fail(line_no, line, "timestamp or extra field (we write none)");
            continue;
        }
        auto value = parse_float(value_text);
        if (!value) {
            fail(line_no, line, "value is not a float");
            continue;
        }
        s.value = *value;
        s.raw_value = value_text;
        auto family = family_of(e, s.name);
        if (family.empty()) {
            fail(line_no, line, "sample without a TYPE line for its family");
        } else if (family != current_family) {
            fail(line_no, line, "sample outside its family's group");
        }
        e.samples.push_back(std::move(s));
    }
    // Histograms: per label set, cumulative buckets in increasing le, the
    // last +Inf equal to _count, and a _sum.
    for (const auto& [name, type] : e.types) {
        if (type != "histogram") continue;
        std::map<std::vector<std::pair<std::string, std::string>>, std::vector<std::pair<double, double>>> buckets;
        for (const auto& s : e.find(name + "_bucket")) {
            auto labels = s.labels;
            auto le = std::find_if(labels.begin(), labels.end(), [](const auto& l) { return l.first == "le"; });
            if (le == labels.end()) {
                e.errors.push_back(name + "_bucket without le");
                continue;
            }
            auto bound = parse_float(le->second);
            if (!bound) e.errors.push_back(name + ": le '" + le->second + "' is not a float");
            labels.erase(le);
            buckets[labels].emplace_back(bound.value_or(0), s.value);
        }
        if (buckets.empty()) {
            if (!e.find(name + "_count").empty()) e.errors.push_back(name + ": _count without buckets");
            continue;
        }
        for (const auto& [labels, list] : buckets) {
            for (std::size_t k = 1; k < list.size(); ++k) {
                if (!(list[k].first > list[k - 1].first)) e.errors.push_back(name + ": le not increasing");
                if (list[k].second < list[k - 1].second) e.errors.push_back(name + ": buckets not cumulative");
            }
            if (!std::isinf(list.back().first)) e.errors.push_back(name + ": last bucket is not +Inf");
            auto count = e.value(name + "_count", labels);
            auto sum = e.value(name + "_sum", labels);
            if (!count || !sum) {
                e.errors.push_back(name + ": missing _count or _sum");
            } else if (*count != list.back().second) {
                e.errors.push_back(name + ": +Inf bucket != _count");
            }
        }
    }
    return e;
}

void require_valid(const Exposition& e)
{
    for (const auto& error : e.errors) {
        FAIL_CHECK(error);
    }
    CHECK(e.errors.empty());
}

// ---------------------------------------------------------------------------
// Raw TCP helpers.

int connect_to(int port)
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    return fd;
}

void send_all(int fd, const std::string& data)
{
    std::size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) return; // the server may have closed on us: the caller checks what it read
        sent += static_cast<std::size_t>(n);
    }
}

struct RawReply {
    std::string data;
    bool eof = false; // the server closed its side
};

// Reads until the server closes or the deadline passes.
RawReply read_until_close(int fd, std::chrono::milliseconds deadline = std::chrono::seconds(20))
{
    RawReply reply;
    auto until = std::chrono::steady_clock::now() + deadline;
    char buf[8192];
    while (std::chrono::steady_clock::now() < until) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n == 0) {
            reply.eof = true;
            break;
        }
        if (n < 0) break;
        reply.data.append(buf, static_cast<std::size_t>(n));
    }
    return reply;
}

std::string raw_request(int port, const std::string& request)
{
    int fd = connect_to(port);
    send_all(fd, request);
    auto reply = read_until_close(fd);
    ::close(fd);
    CHECK(reply.eof);
    return reply.data;
}

struct CurlReply {
    int exit_code = -1;
    int status = 0;
    std::string content_type;
    std::string body;
};

CurlReply curl(const std::string& url, const std::vector<std::string>& extra = {})
{
    std::vector<std::string> argv{
        "curl", "-sS", "-g", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}\n%{content_type}"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    auto r = run(argv, std::nullopt, std::chrono::seconds(30));
    CurlReply out;
    out.exit_code = r.exit_code;
    auto last = r.out.rfind('\n');
    auto before = last == std::string::npos ? std::string::npos : r.out.rfind('\n', last - 1);
    if (last == std::string::npos || before == std::string::npos) {
        return out;
    }
    out.content_type = r.out.substr(last + 1);
    out.status = std::atoi(r.out.substr(before + 1, last - before - 1).c_str());
    out.body = r.out.substr(0, before);
    return out;
}

std::string url(int port, const std::string& path)
{
    return "http://127.0.0.1:" + std::to_string(port) + path;
}

// A DaemonMetrics after a little of everything (constructed with
// version "0.1.0-test" and start time 1764000000.5).
void make_busy(DaemonMetrics& m)
{
    m.reconcile_finished(0.42);
    m.reconcile_finished(3);
    m.action_finished("deploy", "success");
    m.action_finished("deploy", "unavailable");
    m.action_finished("set_power", "success");
    m.set_nodes_by_state({{"active", 7}, {"available", 2}, {"deploy failed", 1}, {"", 3}});
    m.set_nodes_by_condition({{"at-goal", 9}, {"progressing", 4}});
    m.set_queue(5, {{"maxProvisioning", 3}, {"perBMC", 2}});
    m.set_saturated({"maxProvisioning"});
    m.set_running(4, 20);
    m.git_poll(true, 0.2, 1764000100.25);
    m.git_poll(false, 30, 1764000160);
    m.revision(true);
    m.revision(false);
    m.ironic_request("success");
    m.ironic_request("locked");
    m.observe_finished(true, 0.8);
    m.kube_apply("success");
    m.set_kube_objects({{"ready", 3}});
    m.set_ready(true);
}

} // namespace

TEST_SUITE("daemon")
{

    TEST_CASE("metrics: a small registry renders exactly the 0.0.4 text format")
    {
        Registry r;
        auto requests =
            r.counter("http_requests_total", "Requests.\nBy code, with a \\ in the help.", {"code", "method"});
        requests.labels({"200", "GET"}).inc();
        requests.labels({"200", "GET"}).inc(2);
        requests.labels({"404", "GET"}).inc();
        r.gauge("a_temperature", "Temperature.").get().set(-1.5);
        auto h = r.histogram("rpc_seconds", "RPC time.", {0.1, 1}, {"rpc"});
        h.labels({"get"}).observe(0.1); // on the bound: counts in le="0.1"
        h.labels({"get"}).observe(0.5);
        h.labels({"get"}).observe(7);
        const std::string expected = "# HELP a_temperature Temperature.\n"
                                     "# TYPE a_temperature gauge\n"
                                     "a_temperature -1.5\n"
                                     "# HELP http_requests_total Requests.\\nBy code, with a \\\\ in the help.\n"
                                     "# TYPE http_requests_total counter\n"
                                     "http_requests_total{code=\"200\",method=\"GET\"} 3\n"
                                     "http_requests_total{code=\"404\",method=\"GET\"} 1\n"
                                     "# HELP rpc_seconds RPC time.\n"
                                     "# TYPE rpc_seconds histogram\n"
                                     "rpc_seconds_bucket{rpc=\"get\",le=\"0.1\"} 1\n"
                                     "rpc_seconds_bucket{rpc=\"get\",le=\"1\"} 2\n"
                                     "rpc_seconds_bucket{rpc=\"get\",le=\"+Inf\"} 3\n"
                                     "rpc_seconds_sum{rpc=\"get\"} 7.6\n"
                                     "rpc_seconds_count{rpc=\"get\"} 3\n";
        CHECK(r.render() == expected);
        auto parsed = parse_exposition(r.render());
        require_valid(parsed);
        CHECK(parsed.helps["http_requests_total"] == "Requests.\nBy code, with a \\ in the help.");
    }

    TEST_CASE("metrics: label values with quotes, backslashes, newlines and bad UTF-8 are escaped")
    {
        Registry r;
        auto g = r.gauge("weird", "Weird labels.", {"v"});
        const std::vector<std::string> values{"a\"b",     "back\\slash",       "two\nlines",           "tab\there",
                                              "é ü 日本", "bad \xff\xfe utf8", "trailing backslash\\", "",
                                              "}{=,\" x"};
        double i = 0;
        for (const auto& v : values) {
            g.labels({v}).set(++i);
        }
        auto text = r.render();
        auto parsed = parse_exposition(text);
        require_valid(parsed);
        std::set<std::string> read_back;
        for (const auto& s : parsed.find("weird")) {
            read_back.insert(s.label("v"));
        }
        for (const auto& v : values) {
            std::string want = v == "bad \xff\xfe utf8" ? "bad \xEF\xBF\xBD\xEF\xBF\xBD utf8" : v;
            CHECK_MESSAGE(read_back.contains(want), want);
        }
        CHECK(metrics::escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
        CHECK(metrics::escape_help("say \"hi\"\\\n") == "say \"hi\"\\\\\\n");
    }

    TEST_CASE("metrics: values are written as Prometheus reads them")
    {
        CHECK(metrics::format_value(0) == "0");
        CHECK(metrics::format_value(42) == "42");
        CHECK(metrics::format_value(-3) == "-3");
        CHECK(metrics::format_value(0.25) == "0.25");
        CHECK(metrics::format_value(1764000100.25) == "1764000100.25");
        CHECK(metrics::format_value(1e300) == "1e+300");
        CHECK(metrics::format_value(HUGE_VAL) == "+Inf");
        CHECK(metrics::format_value(-HUGE_VAL) == "-Inf");
        CHECK(metrics::format_value(std::nan("")) == "NaN");
        CHECK(std::strtod(metrics::format_value(0.1 + 0.2).c_str(), nullptr) == 0.1 + 0.2);
    }

    TEST_CASE("metrics: names are validated and families registered once")
    {
        Registry r;
        CHECK_THROWS_AS(r.counter("1starts_with_digit", "x"), std::invalid_argument);
        CHECK_THROWS_AS(r.counter("has-dash", "x"), std::invalid_argument);
        CHECK_THROWS_AS(r.counter("", "x"), std::invalid_argument);
        CHECK_THROWS_AS(r.gauge("ok_name", "x", {"bad-label"}), std::invalid_argument);
        CHECK_THROWS_AS(r.gauge("ok_name2", "x", {"__reserved"}), std::invalid_argument);
        CHECK_THROWS_AS(r.gauge("ok_name3", "x", {"a", "a"}), std::invalid_argument);
        CHECK_THROWS_AS(r.histogram("h1", "x", {1, 0.5}), std::invalid_argument);
        CHECK_THROWS_AS(r.histogram("h2", "x", {1, HUGE_VAL}), std::invalid_argument);
        CHECK_THROWS_AS(r.histogram("h3", "x", {1}, {"le"}), std::invalid_argument);
        CHECK(metrics::valid_metric_name("namespace:sub_metric_total"));
        CHECK(metrics::valid_label_name("provision_state"));
        CHECK_FALSE(metrics::valid_label_name("a:b"));

        auto first = r.counter("things_total", "Things.", {"kind"});
        first.labels({"a"}).inc();
        auto again = r.counter("things_total", "Things.", {"kind"});
        CHECK(again.labels({"a"}).value() == 1);
        CHECK_THROWS_AS(r.gauge("things_total", "Things.", {"kind"}), std::invalid_argument);
        CHECK_THROWS_AS(r.counter("things_total", "Things.", {"other"}), std::invalid_argument);
        CHECK_THROWS_AS(first.labels({"a", "b"}), std::invalid_argument);

        r.histogram("latency", "x", {1});
        CHECK_THROWS_AS(r.counter("latency_count", "x"), std::invalid_argument);
        r.gauge("size_sum", "x");
        CHECK_THROWS_AS(r.histogram("size", "x", {1}), std::invalid_argument);
    }

    TEST_CASE("metrics: counters only go up; NaN observations are dropped; gauges replaced whole")
    {
        Registry r;
        auto c = r.counter("c_total", "c").get();
        c.inc(2);
        c.inc(-5);
        c.inc(std::nan(""));
        CHECK(c.value() == 2);
        auto h = r.histogram("h", "h", {1}).get();
        h.observe(std::nan(""));
        CHECK(h.count() == 0);

        auto g = r.gauge("states", "s", {"state"});
        g.replace({{{"active"}, 3}, {{"available"}, 1}});
        auto first = parse_exposition(r.render());
        CHECK(first.value("states", {{"state", "active"}}) == 3.0);
        g.replace({{{"available"}, 4}});
        auto second = parse_exposition(r.render());
        require_valid(second);
        CHECK_FALSE(second.value("states", {{"state", "active"}}).has_value());
        CHECK(second.value("states", {{"state", "available"}}) == 4.0);
    }

    TEST_CASE("metrics: output order is stable: families by name, series by label values")
    {
        Registry r;
        r.gauge("zeta", "z", {"l"}).labels({"b"}).set(1);
        r.gauge("alpha", "a", {"l"}).labels({"z"}).set(1);
        r.gauge("alpha", "a", {"l"}).labels({"a"}).set(2);
        r.gauge("zeta", "z", {"l"}).labels({"a"}).set(1);
        auto parsed = parse_exposition(r.render());
        require_valid(parsed);
        CHECK(parsed.family_order == std::vector<std::string>{"alpha", "zeta"});
        REQUIRE(parsed.samples.size() == 4);
        CHECK(parsed.samples[0].label("l") == "a");
        CHECK(parsed.samples[1].label("l") == "z");
        CHECK(r.render() == r.render());
    }

    TEST_CASE("metrics: DaemonMetrics exposes every family the operators asked for, and it parses")
    {
        DaemonMetrics m("0.1.0-test", 1764000000.5);
        make_busy(m);
        auto parsed = parse_exposition(m.render());
        require_valid(parsed);
        const std::map<std::string, std::string> families{
            {"metalsync_reconcile_total", "counter"},
            {"metalsync_reconcile_duration_seconds", "histogram"},
            {"metalsync_actions_total", "counter"},
            {"metalsync_nodes", "gauge"},
            {"metalsync_nodes_by_condition", "gauge"},
            {"metalsync_queue_depth", "gauge"},
            {"metalsync_queue_waiting", "gauge"},
            {"metalsync_limit_saturated", "gauge"},
            {"metalsync_actions_running", "gauge"},
            {"metalsync_nodes_provisioning", "gauge"},
            {"metalsync_git_last_poll_success_timestamp_seconds", "gauge"},
            {"metalsync_git_last_poll_timestamp_seconds", "gauge"},
            {"metalsync_git_fetch_duration_seconds", "histogram"},
            {"metalsync_git_polls_total", "counter"},
            {"metalsync_git_poll_failures_total", "counter"},
            {"metalsync_revisions_total", "counter"},
            {"metalsync_ironic_requests_total", "counter"},
            {"metalsync_ironic_observe_duration_seconds", "histogram"},
            {"metalsync_ironic_observe_failures_total", "counter"},
            {"metalsync_kube_apply_total", "counter"},
            {"metalsync_kube_objects", "gauge"},
            {"metalsync_provider_machines", "gauge"},
            {"metalsync_provider_steps_total", "counter"},
            {"metalsync_build_info", "gauge"},
            {"metalsync_start_time_seconds", "gauge"},
            {"metalsync_ready", "gauge"},
            {"metalsync_suspended", "gauge"},
        };
        for (const auto& [name, type] : families) {
            CHECK_MESSAGE(parsed.types[name] == type, name);
            CHECK_MESSAGE(!parsed.helps[name].empty(), name);
        }
        CHECK(parsed.types.size() == families.size());
        CHECK(parsed.value("metalsync_reconcile_total") == 2.0);
        CHECK(parsed.value("metalsync_reconcile_duration_seconds_count") == 2.0);
        CHECK(parsed.value("metalsync_reconcile_duration_seconds_bucket", {{"le", "0.5"}}) == 1.0);
        CHECK(parsed.value("metalsync_actions_total", {{"verb", "deploy"}, {"outcome", "unavailable"}}) == 1.0);
        CHECK(parsed.value("metalsync_nodes", {{"provision_state", "deploy failed"}}) == 1.0);
        CHECK(parsed.value("metalsync_nodes", {{"provision_state", "not enrolled"}}) == 3.0);
        CHECK(parsed.value("metalsync_nodes_by_condition", {{"condition", "at-goal"}}) == 9.0);
        CHECK(parsed.value("metalsync_nodes_by_condition", {{"condition", "failed"}}) == 0.0);
        CHECK(parsed.value("metalsync_queue_depth") == 5.0);
        CHECK(parsed.value("metalsync_queue_waiting", {{"limit", "maxProvisioning"}}) == 3.0);
        CHECK(parsed.value("metalsync_queue_waiting", {{"limit", "ironicQPS"}}) == 0.0);
        CHECK(parsed.value("metalsync_limit_saturated", {{"limit", "maxProvisioning"}}) == 1.0);
        CHECK(parsed.value("metalsync_limit_saturated", {{"limit", "perBMC"}}) == 0.0);
        CHECK(parsed.value("metalsync_git_last_poll_success_timestamp_seconds") == 1764000100.25);
        CHECK(parsed.value("metalsync_git_last_poll_timestamp_seconds") == 1764000160.0);
        CHECK(parsed.value("metalsync_git_poll_failures_total") == 1.0);
        CHECK(parsed.value("metalsync_git_fetch_duration_seconds_count") == 2.0);
        CHECK(parsed.value("metalsync_revisions_total", {{"status", "accepted"}}) == 1.0);
        CHECK(parsed.value("metalsync_revisions_total", {{"status", "rejected"}}) == 1.0);
        CHECK(parsed.value("metalsync_ironic_requests_total", {{"outcome", "locked"}}) == 1.0);
        CHECK(parsed.value("metalsync_build_info", {{"version", "0.1.0-test"}}) == 1.0);
        CHECK(parsed.value("metalsync_start_time_seconds") == 1764000000.5);
        CHECK(parsed.value("metalsync_ready") == 1.0);

        // Replaced as a whole: a state no node is in any more disappears.
        m.set_nodes_by_state({{"active", 13}});
        auto after = parse_exposition(m.render());
        CHECK(after.find("metalsync_nodes").size() == 1);
        CHECK(after.value("metalsync_nodes", {{"provision_state", "active"}}) == 13.0);
    }

    TEST_CASE("metrics: a fresh DaemonMetrics already shows zeros, not missing series")
    {
        DaemonMetrics m("0.1.0", 1);
        auto parsed = parse_exposition(m.render());
        require_valid(parsed);
        CHECK(parsed.value("metalsync_reconcile_total") == 0.0);
        CHECK(parsed.value("metalsync_git_poll_failures_total") == 0.0);
        CHECK(parsed.value("metalsync_revisions_total", {{"status", "rejected"}}) == 0.0);
        CHECK(parsed.value("metalsync_reconcile_duration_seconds_bucket", {{"le", "+Inf"}}) == 0.0);
        CHECK(parsed.value("metalsync_ready") == 0.0);
        CHECK(parsed.value("metalsync_limit_saturated", {{"limit", "ironicQPS"}}) == 0.0);
    }

    TEST_CASE("metrics: the executor's stats and waits map to queue, limit and saturation gauges")
    {
        CHECK(DaemonMetrics::limit_of_wait("maxProvisioning (20 of 20 nodes provisioning)") == "maxProvisioning");
        CHECK(DaemonMetrics::limit_of_wait("perBMC (192.0.2.1:623 busy)") == "perBMC");
        CHECK(DaemonMetrics::limit_of_wait("ironicQPS (10.000000 requests/s)") == "ironicQPS");
        CHECK(DaemonMetrics::limit_of_wait("a free worker") == "workers");
        CHECK(DaemonMetrics::limit_of_wait("an action already in flight for this node") == "node");
        CHECK(DaemonMetrics::limit_of_wait("something new") == "other");

        ActionResult ok;
        ok.ok = true;
        ActionResult locked;
        locked.error_type = "locked";
        ActionResult odd;
        odd.error_type = "something the runner made up";
        CHECK(DaemonMetrics::action_outcome(ok) == "success");
        CHECK(DaemonMetrics::action_outcome(locked) == "locked");
        CHECK(DaemonMetrics::action_outcome(odd) == "error");

        DaemonMetrics m("0.1.0", 1);
        ExecutorStats stats;
        stats.queued = 3;
        stats.running = 2;
        stats.busy_provisioning = 20;
        stats.saturated = {"maxProvisioning", "perBMC"};
        std::map<std::string, NodeWait> waits{
            {"n1", {"maxProvisioning (20 of 20 nodes provisioning)", 1}},
            {"n2", {"maxProvisioning (20 of 20 nodes provisioning)", 2}},
            {"n3", {"perBMC (192.0.2.1:623 busy)", 3}},
        };
        m.set_executor(stats, waits);
        auto parsed = parse_exposition(m.render());
        require_valid(parsed);
        CHECK(parsed.value("metalsync_queue_depth") == 3.0);
        CHECK(parsed.value("metalsync_actions_running") == 2.0);
        CHECK(parsed.value("metalsync_nodes_provisioning") == 20.0);
        CHECK(parsed.value("metalsync_queue_waiting", {{"limit", "maxProvisioning"}}) == 2.0);
        CHECK(parsed.value("metalsync_queue_waiting", {{"limit", "perBMC"}}) == 1.0);
        CHECK(parsed.value("metalsync_limit_saturated", {{"limit", "perBMC"}}) == 1.0);
        CHECK(parsed.value("metalsync_limit_saturated", {{"limit", "ironicQPS"}}) == 0.0);
    }

    TEST_CASE("metrics: updates from many threads while scraping lose nothing and every scrape parses")
    {
        DaemonMetrics m("0.1.0", 1);
        constexpr int k_threads = 4;
        constexpr int k_per_thread = 20000;
        std::atomic<bool> done{false};
        std::vector<std::string> bad;
        std::thread scraper([&] {
            while (!done) {
                auto parsed = parse_exposition(m.render());
                if (!parsed.errors.empty()) bad.push_back(parsed.errors.front());
            }
        });
        std::vector<std::thread> writers;
        for (int t = 0; t < k_threads; ++t) {
            writers.emplace_back([&m, t] {
                for (int i = 0; i < k_per_thread; ++i) {
                    m.action_finished(i % 2 == 0 ? "deploy" : "provide", "success");
                    m.reconcile_finished(0.001 * (i % 1000));
                    m.set_nodes_by_state({{"active", i}, {"state-" + std::to_string(t), 1}});
                }
            });
        }
        for (auto& w : writers)
            w.join();
        done = true;
        scraper.join();
        CHECK(bad.empty());
        auto parsed = parse_exposition(m.render());
        require_valid(parsed);
        CHECK(parsed.value("metalsync_actions_total", {{"verb", "deploy"}, {"outcome", "success"}}) ==
              double(k_threads * k_per_thread / 2));
        CHECK(parsed.value("metalsync_reconcile_total") == double(k_threads * k_per_thread));
        CHECK(parsed.value("metalsync_reconcile_duration_seconds_count") == double(k_threads * k_per_thread));
    }

    TEST_CASE("metrics: cost of a 10,000-node tick and of rendering (figures printed, never asserted)")
    {
        DaemonMetrics m(METALSYNC_VERSION, 1);
        static const std::vector<std::string> states{"active",         "available",     "manageable", "deploying",
                                                     "wait call-back", "deploy failed", "cleaning",   "clean wait",
                                                     "enroll",         "inspecting"};
        static const std::vector<std::string> conditions{"at-goal", "progressing", "waiting", "failed"};
        static const std::vector<std::string> verbs{"deploy", "provide", "manage", "set_power", "update_node"};
        std::vector<std::string> node_state(10000);
        for (std::size_t i = 0; i < node_state.size(); ++i)
            node_state[i] = states[(i * 7) % states.size()];

        using Clock = std::chrono::steady_clock;
        constexpr int k_ticks = 20;
        Clock::duration counting{};
        Clock::duration gauges{};
        Clock::duration actions{};
        Clock::duration render{};
        std::size_t bytes = 0;
        for (int tick = 0; tick < k_ticks; ++tick) {
            // What the loop does per tick with 10,000 nodes: count them by
            // state and condition (the loop's own work), hand the totals
            // over, and (a worst case) report 10,000 completions.
            auto t0 = Clock::now();
            std::map<std::string, int> by_state;
            std::map<std::string, int> by_condition;
            for (std::size_t i = 0; i < node_state.size(); ++i) {
                ++by_state[node_state[i]];
                ++by_condition[conditions[i % conditions.size()]];
            }
            auto t1 = Clock::now();
            m.set_nodes_by_state(by_state);
            m.set_nodes_by_condition(by_condition);
            m.set_queue(500, {{"maxProvisioning", 480}, {"perBMC", 20}});
            m.set_saturated({"maxProvisioning"});
            m.reconcile_finished(0.3);
            auto t2 = Clock::now();
            for (std::size_t i = 0; i < node_state.size(); ++i) {
                m.action_finished(verbs[i % verbs.size()], i % 10 == 0 ? "locked" : "success");
            }
            auto t3 = Clock::now();
            auto text = m.render();
            auto t4 = Clock::now();
            bytes = text.size();
            counting += t1 - t0;
            gauges += t2 - t1;
            actions += t3 - t2;
            render += t4 - t3;
        }
        auto us = [](Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count() / k_ticks; };
        MESSAGE("per 10,000-node tick (mean of "
                << k_ticks << "): counting nodes by state/condition " << us(counting)
                << " us (the loop's work); gauge updates " << us(gauges) << " us; 10,000 action_finished "
                << us(actions) << " us; render /metrics " << us(render) << " us for " << bytes << " bytes");
        require_valid(parse_exposition(m.render()));
    }

    TEST_CASE("metrics server: listen addresses are parsed strictly")
    {
        auto v4 = parse_listen_address("127.0.0.1:9460");
        REQUIRE(v4);
        CHECK(v4->host == "127.0.0.1");
        CHECK(v4->port == 9460);
        auto v6 = parse_listen_address("[::1]:9460");
        REQUIRE(v6);
        CHECK(v6->host == "::1");
        CHECK(v6->text() == "[::1]:9460");
        CHECK(parse_listen_address("localhost:0"));
        CHECK_FALSE(parse_listen_address("127.0.0.1"));
        CHECK_FALSE(parse_listen_address(":9460"));
        CHECK_FALSE(parse_listen_address("::1:9460"));
        CHECK_FALSE(parse_listen_address("[::1]9460"));
        CHECK_FALSE(parse_listen_address("127.0.0.1:65536"));
        CHECK_FALSE(parse_listen_address("127.0.0.1:94x0"));
        CHECK_FALSE(parse_listen_address("127.0.0.1:"));
        CHECK(parse_listen_address("host:").error().find("port") != std::string::npos);
    }

    TEST_CASE("metrics server: curl scrapes /metrics over TCP and every line parses")
    {
        DaemonMetrics m("0.1.0-test", 1764000000.5);
        make_busy(m);
        MetricsServer server("127.0.0.1:0", [&m] { return m.render(); });
        REQUIRE(server.start());
        REQUIRE(server.port() > 0);

        auto metrics = curl(url(server.port(), "/metrics"));
        CHECK(metrics.exit_code == 0);
        CHECK(metrics.status == 200);
        CHECK(metrics.content_type == "text/plain; version=0.0.4; charset=utf-8");
        auto parsed = parse_exposition(metrics.body);
        require_valid(parsed);
        CHECK(parsed.value("metalsync_reconcile_total") == 2.0);
        CHECK(metrics.body == m.render());

        auto health = curl(url(server.port(), "/healthz"));
        CHECK(health.status == 200);
        CHECK(health.body == "ok\n");
        CHECK(curl(url(server.port(), "/")).status == 404);
        CHECK(curl(url(server.port(), "/metrics/x")).status == 404);
        CHECK(curl(url(server.port(), "/metrics?name[]=x")).status == 200);
        CHECK(curl(url(server.port(), "/metrics"), {"-X", "POST", "-d", "x=1"}).status == 405);
        CHECK(curl(url(server.port(), "/metrics"), {"-I"}).status == 200);
        server.stop();
        CHECK(curl(url(server.port(), "/metrics")).exit_code != 0);
    }

    TEST_CASE("metrics server: raw HTTP/1.1 requests get complete responses and Connection: close")
    {
        MetricsServer server("127.0.0.1:0", [] { return std::string("x 1\n"); });
        REQUIRE(server.start());
        auto reply = raw_request(server.port(), "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
        CHECK(reply.starts_with("HTTP/1.1 200 OK\r\n"));
        CHECK(reply.find("\r\nConnection: close\r\n") != std::string::npos);
        CHECK(reply.find("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != std::string::npos);
        CHECK(reply.find("\r\nContent-Length: 4\r\n") != std::string::npos);
        CHECK(reply.ends_with("\r\n\r\nx 1\n"));

        auto other = raw_request(server.port(), "GET /other HTTP/1.1\r\n\r\n");
        CHECK(other.starts_with("HTTP/1.1 404 Not Found\r\n"));
        auto method = raw_request(server.port(), "DELETE /metrics HTTP/1.1\r\n\r\n");
        CHECK(method.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        CHECK(method.find("\r\nAllow: GET, HEAD\r\n") != std::string::npos);
        auto head = raw_request(server.port(), "HEAD /metrics HTTP/1.0\r\n\r\n");
        CHECK(head.starts_with("HTTP/1.1 200 OK\r\n"));
        CHECK(head.ends_with("\r\n\r\n"));
        CHECK(raw_request(server.port(), "GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400 "));
        CHECK(raw_request(server.port(), "GET /metrics HTTP/2.0\r\n\r\n").starts_with("HTTP/1.1 505 "));
        CHECK(raw_request(server.port(), "GET /metrics HTTP/1.1\n\n").starts_with("HTTP/1.1 200 OK\r\n"));
    }

    TEST_CASE("metrics server: a slow client holding half a request does not stop a scrape")
    {
        MetricsServerOptions options;
        options.read_timeout = std::chrono::seconds(60); // the slow clients would outlast any scrape
        options.max_connections = 8;
        DaemonMetrics m("0.1.0", 1);
        MetricsServer server(
            "127.0.0.1:0", [&m] { return m.render(); }, options);
        REQUIRE(server.start());

        int slow = connect_to(server.port());
        send_all(slow, "GET /metr");
        auto scrape = curl(url(server.port(), "/metrics"));
        CHECK(scrape.status == 200);
        require_valid(parse_exposition(scrape.body));

        // More idle connections than slots: the oldest are dropped for newcomers.
        std::vector<int> crowd;
        for (int i = 0; i < 20; ++i) {
            crowd.push_back(connect_to(server.port()));
            send_all(crowd.back(), "GET / HTTP/1.1\r\nX-Slow: ");
        }
        auto crowded = curl(url(server.port(), "/metrics"));
        CHECK(crowded.status == 200);

        // The first slow client is finally complete... or was dropped; either way
        // it gets a whole response or a clean close, never a hang.
        send_all(slow, "ics HTTP/1.1\r\n\r\n");
        auto late = read_until_close(slow);
        CHECK(late.eof);
        CHECK((late.data.empty() || late.data.starts_with("HTTP/1.1 200 OK")));
        ::close(slow);
        for (int fd : crowd)
            ::close(fd);
    }

    TEST_CASE("metrics server: a request that does not arrive in time gets 408 and is closed")
    {
        MetricsServerOptions options;
        options.read_timeout = std::chrono::milliseconds(200);
        MetricsServer server(
            "127.0.0.1:0", [] { return std::string(); }, options);
        REQUIRE(server.start());
        int fd = connect_to(server.port());
        send_all(fd, "GET /metrics HTTP/1.1\r\n");
        auto reply = read_until_close(fd);
        ::close(fd);
        CHECK(reply.eof);
        CHECK(reply.data.starts_with("HTTP/1.1 408 Request Timeout\r\n"));
    }

    TEST_CASE("metrics server: an oversized request gets 431 and the connection closed")
    {
        MetricsServer server("127.0.0.1:0", [] { return std::string("x 1\n"); });
        REQUIRE(server.start());
        int fd = connect_to(server.port());
        std::string request = "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(64 * 1024, 'a');
        send_all(fd, request);
        ::shutdown(fd, SHUT_WR);
        auto reply = read_until_close(fd);
        ::close(fd);
        CHECK(reply.eof);
        CHECK(reply.data.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        CHECK(reply.data.find("Connection: close") != std::string::npos);
        // And the server still answers afterwards.
        CHECK(curl(url(server.port(), "/metrics")).status == 200);
    }

    TEST_CASE("metrics server: stop() with a client connected returns promptly and closes it")
    {
        MetricsServerOptions options;
        options.read_timeout = std::chrono::seconds(120);
        MetricsServer server(
            "127.0.0.1:0", [] { return std::string(); }, options);
        REQUIRE(server.start());
        int fd = connect_to(server.port());
        send_all(fd, "GET /metr");
        // Give the server a moment to accept, so the client is a live connection.
        CHECK(wait_until([&] { return curl(url(server.port(), "/healthz")).status == 200; }));
        auto stopped = std::async(std::launch::async, [&server] { server.stop(); });
        // Far below read_timeout: stop() did not wait for the client.
        CHECK(stopped.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
        auto reply = read_until_close(fd, std::chrono::seconds(30));
        CHECK(reply.eof);
        ::close(fd);
        CHECK_FALSE(server.running());
        server.stop(); // idempotent
    }

    TEST_CASE("metrics server: an address in use is a clear error; rebind moves the listener")
    {
        MetricsServer first("127.0.0.1:0", [] { return std::string("a 1\n"); });
        REQUIRE(first.start());
        std::string taken = "127.0.0.1:" + std::to_string(first.port());
        MetricsServer second(taken, [] { return std::string("b 1\n"); });
        auto started = second.start();
        REQUIRE_FALSE(started);
        CHECK(started.error().find(taken) != std::string::npos);
        CHECK(started.error().find("address already in use") != std::string::npos);

        // A failed rebind keeps the old address serving.
        MetricsServer mover("127.0.0.1:0", [] { return std::string("c 1\n"); });
        REQUIRE(mover.start());
        int old_port = mover.port();
        CHECK_FALSE(mover.rebind(taken));
        CHECK(mover.port() == old_port);
        CHECK(curl(url(old_port, "/metrics")).body == "c 1\n");
        CHECK_FALSE(mover.rebind("not an address"));
        CHECK(mover.running());

        int taken_port = first.port();
        first.stop();
        REQUIRE(mover.rebind(taken));
        CHECK(mover.listen() == taken);
        CHECK(mover.port() == taken_port);
        CHECK(curl(url(taken_port, "/metrics")).body == "c 1\n");
        CHECK(curl(url(old_port, "/metrics")).exit_code != 0);
    }

    TEST_CASE("metrics server: IPv6 loopback")
    {
        MetricsServer server("[::1]:0", [] { return std::string("v6 1\n"); });
        auto started = server.start();
        if (!started) {
            MESSAGE("no IPv6 loopback here, skipped: " << started.error());
            return;
        }
        auto reply = curl("http://[::1]:" + std::to_string(server.port()) + "/metrics");
        CHECK(reply.status == 200);
        CHECK(reply.body == "v6 1\n");
    }

} // TEST_SUITE
