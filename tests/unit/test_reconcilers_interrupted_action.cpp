// Judging an action the daemon died in the middle of, from what Ironic shows.

#include <doctest/doctest.h>

#include "reconcilers/interrupted_action.hpp"

using namespace metalsync;
using nlohmann::json;

namespace {

constexpr double k_started = 1'796'200'000.0;  // 2026-12-02T... UTC

ObservedNode node_in(const std::string& state, const std::string& updated_at)
{
    ObservedNode n;
    n.name = "node-01";
    n.provision_state = state;
    n.provision_updated_at = updated_at;
    return n;
}

// An Ironic timestamp `delta` seconds from the attempt's start.
std::string ironic_time(double delta)
{
    const auto t = static_cast<std::time_t>(k_started + delta);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", std::gmtime(&t));
    return std::string(buf) + ".250000+00:00";
}

} // namespace

TEST_SUITE("reconcilers")
{
    TEST_CASE("interrupted: Ironic timestamps parse with and without zone and fraction")
    {
        REQUIRE(parse_ironic_time("2026-12-02T10:00:01+00:00").has_value());
        CHECK(*parse_ironic_time("2026-12-02T10:00:01.500000+00:00") ==
              doctest::Approx(*parse_ironic_time("2026-12-02T10:00:01") + 0.5));
        CHECK(*parse_ironic_time("2026-12-02T12:00:01+02:00") == doctest::Approx(*parse_ironic_time("2026-12-02T10:00:01Z")));
        CHECK_FALSE(parse_ironic_time("").has_value());
        CHECK_FALSE(parse_ironic_time("yesterday").has_value());
        CHECK(*parse_ironic_time(ironic_time(0)) == doctest::Approx(k_started + 0.25));
    }

    TEST_CASE("interrupted: provision steps are judged by the state and when Ironic entered it")
    {
        SUBCASE("deploy that reached Ironic: deploying, or active since after the start")
        {
            auto n = node_in("wait call-back", ironic_time(1));
            CHECK(resolve_interrupted("deploy", json::object(), k_started, &n).outcome == InterruptedOutcome::done);
            n = node_in("active", ironic_time(40));
            CHECK(resolve_interrupted("deploy", json::object(), k_started, &n).outcome == InterruptedOutcome::done);
        }
        SUBCASE("deploy that never arrived: still available since before the start")
        {
            auto n = node_in("available", ironic_time(-600));
            const auto r = resolve_interrupted("deploy", json::object(), k_started, &n);
            CHECK(r.outcome == InterruptedOutcome::not_started);
            CHECK(r.reason.find("'available'") != std::string::npos);
        }
        SUBCASE("active since before the start is not this deploy's doing")
        {
            auto n = node_in("active", ironic_time(-600));
            CHECK(resolve_interrupted("deploy", json::object(), k_started, &n).outcome == InterruptedOutcome::not_started);
        }
        SUBCASE("deploy that Ironic failed after it arrived, with Ironic's message")
        {
            auto n = node_in("deploy failed", ironic_time(30));
            n.last_error = "Timeout reached while waiting for callback";
            const auto r = resolve_interrupted("deploy", json::object(), k_started, &n);
            CHECK(r.outcome == InterruptedOutcome::failed);
            CHECK(r.reason.find("Timeout reached") != std::string::npos);
        }
        SUBCASE("provide, manage, undeploy, inspect")
        {
            auto n = node_in("clean wait", ironic_time(2));
            CHECK(resolve_interrupted("provide", json::object(), k_started, &n).outcome == InterruptedOutcome::done);
            n = node_in("manageable", ironic_time(-5));
            CHECK(resolve_interrupted("provide", json::object(), k_started, &n).outcome == InterruptedOutcome::not_started);
            n = node_in("manageable", ironic_time(3));
            CHECK(resolve_interrupted("manage", json::object(), k_started, &n).outcome == InterruptedOutcome::done);
            n = node_in("enroll", ironic_time(3));
            n.last_error = "Failed to get power state: IPMI timeout";
            CHECK(resolve_interrupted("manage", json::object(), k_started, &n).outcome == InterruptedOutcome::failed);
            n = node_in("deleting", ironic_time(1));
            CHECK(resolve_interrupted("undeploy", json::object(), k_started, &n).outcome == InterruptedOutcome::done);
            n = node_in("inspect failed", ironic_time(100));
            CHECK(resolve_interrupted("inspect", json::object(), k_started, &n).outcome == InterruptedOutcome::failed);
        }
    }

    TEST_CASE("interrupted: create, delete, ports, maintenance and power by what they set")
    {
        auto n = node_in("enroll", ironic_time(1));
        CHECK(resolve_interrupted("create", json::object(), k_started, &n).outcome == InterruptedOutcome::done);
        CHECK(resolve_interrupted("create", json::object(), k_started, nullptr).outcome == InterruptedOutcome::not_started);
        CHECK(resolve_interrupted("delete", json::object(), k_started, nullptr).outcome == InterruptedOutcome::done);
        CHECK(resolve_interrupted("delete", json::object(), k_started, &n).outcome == InterruptedOutcome::not_started);

        n.ports.push_back(ObservedPort{"p1", "u1", "52:54:00:aa:bb:cc", true, ""});
        CHECK(resolve_interrupted("port-create", json{{"address", "52:54:00:AA:BB:CC"}}, k_started, &n).outcome ==
              InterruptedOutcome::done);
        CHECK(resolve_interrupted("port-create", json{{"address", "52:54:00:00:00:01"}}, k_started, &n).outcome ==
              InterruptedOutcome::not_started);
        CHECK(resolve_interrupted("port-delete", json{{"address", "52:54:00:aa:bb:cc"}}, k_started, &n).outcome ==
              InterruptedOutcome::not_started);

        n.maintenance = true;
        CHECK(resolve_interrupted("maintenance", json{{"maintenance", true}}, k_started, &n).outcome ==
              InterruptedOutcome::done);
        CHECK(resolve_interrupted("maintenance", json{{"maintenance", false}}, k_started, &n).outcome ==
              InterruptedOutcome::not_started);

        n.power_state = "power on";
        n.target_power_state = "power off";
        CHECK(resolve_interrupted("power", json{{"target", "power off"}}, k_started, &n).outcome == InterruptedOutcome::done);
        n.target_power_state.clear();
        CHECK(resolve_interrupted("power", json{{"target", "power off"}}, k_started, &n).outcome ==
              InterruptedOutcome::not_started);

        CHECK(resolve_interrupted("update", json::object(), k_started, &n).outcome == InterruptedOutcome::unknown);
        CHECK(resolve_interrupted("deploy", json::object(), k_started, nullptr).outcome == InterruptedOutcome::not_started);
    }
}
