#pragma once

// A stand-in Ironic that counts: it answers the calls the rate tests make
// (GET /, paginated node and port lists, a node, provision/power/maintenance
// changes) and records when each request arrived. The limit is proven by
// these server-side counters, never by the limiter's own.

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/unit/ironic_fixture.hpp"

namespace metalsync::test {

class CountingIronic {
  public:
    using Clock = std::chrono::steady_clock;

    // `nodes` nodes, each with one port; the lists answer `page_size` items per page.
    explicit CountingIronic(int nodes = 3)
        : m_nodes(nodes), m_server([this](const FakeRequest& r) { return answer(r); })
    {
    }

    [[nodiscard]] std::string url() const { return m_server.url(); }

    [[nodiscard]] std::vector<Clock::time_point> arrivals() const
    {
        std::lock_guard lock(m_mutex);
        return m_arrivals;
    }
    [[nodiscard]] std::size_t count() const
    {
        std::lock_guard lock(m_mutex);
        return m_arrivals.size();
    }
    [[nodiscard]] std::size_t count_with_prefix(const std::string& method_and_path) const
    {
        std::size_t n = 0;
        for (const auto& r : m_server.requests()) {
            n += (r.method + " " + r.path).starts_with(method_and_path) ? 1 : 0;
        }
        return n;
    }

  private:
    static std::string node_json(int i)
    {
        return nlohmann::json{{"uuid", "uuid-" + std::to_string(i)},
                              {"name", "n" + std::to_string(i)},
                              {"provision_state", "manageable"},
                              {"power_state", "power off"}}
            .dump();
    }

    // One item per page after the marker; "next" while more remain.
    nlohmann::json page(const std::string& path, const char* key, const char* uuid_prefix) const
    {
        int start = 0;
        if (auto m = path.find("marker="); m != std::string::npos) {
            auto uuid = path.substr(m + 7, path.find('&', m) - m - 7);
            start = std::stoi(uuid.substr(uuid.rfind('-') + 1)) + 1;
        }
        nlohmann::json items = nlohmann::json::array();
        if (start < m_nodes) {
            auto item = nlohmann::json::parse(node_json(start));
            if (std::string(key) == "ports") {
                item = {{"uuid", std::string(uuid_prefix) + std::to_string(start)},
                        {"node_uuid", "uuid-" + std::to_string(start)},
                        {"address", "52:54:00:00:00:0" + std::to_string(start % 10)}};
            }
            items.push_back(item);
        }
        nlohmann::json doc{{key, items}};
        if (start + 1 < m_nodes) {
            doc["next"] = "http://ignored";
        }
        return doc;
    }

    FakeResponse answer(const FakeRequest& r)
    {
        {
            std::lock_guard lock(m_mutex);
            m_arrivals.push_back(Clock::now());
        }
        if (r.path == "/") {
            return {200, {}, ironic_root_body("1.1", "1.82")};
        }
        if (r.method == "GET" && r.path.starts_with("/v1/nodes?")) {
            return {200, {}, page(r.path, "nodes", "uuid-").dump()};
        }
        if (r.method == "GET" && r.path.starts_with("/v1/ports?")) {
            return {200, {}, page(r.path, "ports", "port-").dump()};
        }
        if (r.method == "GET" && r.path.starts_with("/v1/nodes/")) {
            return {200, {}, node_json(0)};
        }
        return {202, {}, "{}"};
    }

    int m_nodes;
    mutable std::mutex m_mutex;
    std::vector<Clock::time_point> m_arrivals;
    FakeHttpServer m_server; // last: its thread stops before the members it uses go
};

// The most arrivals in any window of `window` (each window starting at an arrival).
inline std::size_t most_in_window(std::vector<std::chrono::steady_clock::time_point> times,
                                  std::chrono::steady_clock::duration window)
{
    std::sort(times.begin(), times.end());
    std::size_t most = 0;
    std::size_t j = 0;
    for (std::size_t i = 0; i < times.size(); ++i) {
        j = std::max(j, i);
        while (j < times.size() && times[j] - times[i] < window) {
            ++j;
        }
        most = std::max(most, j - i);
    }
    return most;
}

// What a window counted at the server may hold beyond rate * window + burst:
// the network and a busy scheduler may bring requests up to 50 ms closer
// together than the limiter let them go (and one more for rounding). Without
// a per-request limit the excess is a multiple of the rate, far above this.
inline double jitter_allowance(double rate)
{
    return 1 + rate * 0.05;
}

// Requests per second from the first arrival to the last.
inline double observed_rate(std::vector<std::chrono::steady_clock::time_point> times)
{
    if (times.size() < 2) {
        return 0;
    }
    std::sort(times.begin(), times.end());
    const double span = std::chrono::duration<double>(times.back() - times.front()).count();
    return span > 0 ? static_cast<double>(times.size() - 1) / span : 0;
}

} // namespace metalsync::test
