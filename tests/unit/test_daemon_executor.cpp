// The executor's limits, counted by the runner (the stand-in for Ironic),
// not by the executor itself: per-BMC concurrency, nodes provisioning at
// once, requests per second, one action per node; and queue replacement.
// ironicQPS per request is counted by a stand-in Ironic server
// (counting_ironic.hpp) that the workers' real IronicClients talk to.

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "daemon/executor.hpp"
#include "reconcilers/ironic/ironic_client.hpp"
#include "tests/support/test_support.hpp"
#include "tests/unit/counting_ironic.hpp"

using namespace metalsync;
using namespace std::chrono_literals;

namespace {

// spdlog's registry is a function-local static inside libspdlog.so, which
// ThreadSanitizer does not instrument: two threads logging first at once
// (the observer and a worker) look like a race on its construction. Made
// here, before any thread starts.
[[maybe_unused]] const bool k_spdlog_ready = spdlog::default_logger_raw() != nullptr;

struct Counters {
    std::mutex mutex;
    std::map<std::string, int> bmc_now;
    std::map<std::string, int> bmc_max;
    int provisioning_now = 0;
    int provisioning_max = 0;
    std::set<std::string> nodes_now;
    bool node_overlap = false;
    std::vector<std::chrono::steady_clock::time_point> starts;
};

QueuedAction action(const std::string& node, const std::string& bmc, bool provisioning)
{
    QueuedAction q;
    q.action.node = node;
    q.action.verb = provisioning ? ActionVerb::deploy : ActionVerb::update_node;
    q.action.bmc = bmc;
    q.action.provisioning = provisioning;
    return q;
}

Executor::RunnerFactory counting_runner(Counters& c, std::chrono::milliseconds work)
{
    return [&c, work]() -> Executor::Runner {
        return [&c, work](const Action& a) {
            {
                std::lock_guard lock(c.mutex);
                c.starts.push_back(std::chrono::steady_clock::now());
                if (!c.nodes_now.insert(a.node).second) c.node_overlap = true;
                if (!a.bmc.empty()) c.bmc_max[a.bmc] = std::max(c.bmc_max[a.bmc], ++c.bmc_now[a.bmc]);
                if (a.provisioning) c.provisioning_max = std::max(c.provisioning_max, ++c.provisioning_now);
            }
            std::this_thread::sleep_for(work);
            {
                std::lock_guard lock(c.mutex);
                c.nodes_now.erase(a.node);
                if (!a.bmc.empty()) --c.bmc_now[a.bmc];
                if (a.provisioning) --c.provisioning_now;
            }
            ActionResult r;
            r.ok = true;
            return r;
        };
    };
}

std::size_t drain(Executor& e, std::size_t expected)
{
    std::size_t done = 0;
    metalsync::test::wait_until([&] {
        done += e.take_completions().size();
        return done >= expected;
    }, 60s);
    return done;
}

// A runner factory whose every action makes three Ironic requests through
// the worker's own IronicClient, made from `connection` (as the daemon's).
Executor::RunnerFactory ironic_runner(const IronicConnection& connection)
{
    return [connection]() -> Executor::Runner {
        auto client = std::make_shared<IronicClient>(connection);
        return [client](const Action& a) {
            ActionResult r;
            auto node = client->get_node(a.node);
            auto power = node ? client->set_power_state(a.node, "power on") : std::unexpected(node.error());
            auto maintenance = power ? client->set_maintenance(a.node, false) : power;
            r.ok = maintenance.has_value();
            if (!r.ok) {
                r.error = maintenance.error().describe();
            }
            return r;
        };
    };
}

} // namespace

TEST_SUITE("daemon")
{
    TEST_CASE("executor: per-BMC and provisioning limits are never exceeded")
    {
        Counters c;
        ExecutorLimits limits;
        limits.ironic_qps = 1000;
        limits.max_provisioning = 3;
        limits.per_bmc = 1;
        limits.workers = 8;
        Executor e(limits, counting_runner(c, 20ms));
        e.start();
        std::vector<QueuedAction> wanted;
        for (int i = 0; i < 40; ++i) {
            // 40 nodes behind 5 BMCs (a chassis), half of them deploying.
            wanted.push_back(action("n" + std::to_string(i), "bmc" + std::to_string(i % 5), i % 2 == 0));
        }
        auto r = e.replace_queue(wanted);
        CHECK(r.added.size() == 40);
        CHECK(drain(e, 40) == 40);
        e.stop(5s);
        for (const auto& [bmc, max] : c.bmc_max) {
            INFO(bmc);
            CHECK(max == 1);
        }
        CHECK(c.provisioning_max <= 3);
        CHECK(c.provisioning_max >= 1);
        CHECK_FALSE(c.node_overlap);
    }

    TEST_CASE("executor: Ironic's own busy nodes count against maxProvisioning")
    {
        Counters c;
        ExecutorLimits limits;
        limits.ironic_qps = 1000;
        limits.max_provisioning = 2;
        limits.workers = 4;
        Executor e(limits, counting_runner(c, 5ms));
        e.set_ironic_busy({"busy-a", "busy-b"});
        e.start();
        e.replace_queue({action("n1", "b1", true), action("n2", "b2", false)});
        // The non-provisioning action runs; the deploy waits on the limit and says so.
        CHECK(drain(e, 1) == 1);
        auto waits = e.waits();
        REQUIRE(waits.contains("n1"));
        CHECK(waits["n1"].waiting_on.find("maxProvisioning (2 of 2") == 0);
        CHECK(e.stats().saturated == std::vector<std::string>{"maxProvisioning"});
        e.set_ironic_busy({"busy-a"});
        CHECK(drain(e, 1) == 1);
        e.stop(5s);
    }

    TEST_CASE("executor: without requests, each action start still costs a token")
    {
        Counters c;
        ExecutorLimits limits;
        limits.ironic_qps = 20;
        limits.per_bmc = 16;
        limits.max_provisioning = 1000;
        limits.workers = 8;
        Executor e(limits, counting_runner(c, 0ms));
        e.start();
        std::vector<QueuedAction> wanted;
        for (int i = 0; i < 60; ++i) {
            wanted.push_back(action("n" + std::to_string(i), "", false));
        }
        e.replace_queue(wanted);
        CHECK(drain(e, 60) == 60);
        e.stop(5s);
        // In any one-second window: at most the rate (20) plus the burst (2).
        CHECK(metalsync::test::most_in_window(c.starts, 1s) <= 22);
    }

    TEST_CASE("executor: a new plan cancels queued actions that no longer apply and keeps the rest in place")
    {
        Counters c;
        ExecutorLimits limits;
        limits.workers = 1;
        Executor e(limits, counting_runner(c, 0ms));  // not started: everything stays queued
        auto first = e.replace_queue({action("a", "", false), action("b", "", false), action("c", "", false)});
        CHECK(first.added.size() == 3);
        auto second = e.replace_queue({action("c", "", false), action("d", "", false)});
        CHECK(second.added.size() == 1);
        CHECK(second.added[0].action.node == "d");
        REQUIRE(second.cancelled.size() == 2);
        std::set<std::string> cancelled{second.cancelled[0].action.node, second.cancelled[1].action.node};
        CHECK(cancelled == std::set<std::string>{"a", "b"});
        CHECK(e.stats().queued == 2);
        auto left = e.stop(0ms);
        CHECK(left.empty());  // never started: nothing to report
    }

    TEST_CASE("executor: a node whose finished action is not yet taken is not queued again")
    {
        // The daemon takes completions, observes, plans, then replaces the
        // queue; an action finishing in between was planned on an observation
        // from before its effect, so queuing it again would repeat it.
        Counters c;
        ExecutorLimits limits;
        limits.workers = 1;
        Executor e(limits, counting_runner(c, 0ms));
        e.start();
        REQUIRE(e.replace_queue({action("a", "", false)}).added.size() == 1);
        REQUIRE(e.wait_for_completion(10s));
        auto again = e.replace_queue({action("a", "", false), action("b", "", false)});
        REQUIRE(again.refused.size() == 1);
        CHECK(again.refused[0].action.node == "a");
        REQUIRE(again.added.size() == 1);
        CHECK(again.added[0].action.node == "b");
        CHECK(drain(e, 2) == 2);  // a's first run and b: a did not run twice
        auto after = e.replace_queue({action("a", "", false)});  // taken: planned on a fresh observation
        CHECK(after.added.size() == 1);
        CHECK(drain(e, 1) == 1);
        {
            std::lock_guard lock(c.mutex);
            CHECK(c.starts.size() == 3);
        }
        (void)e.stop(1s);
    }

    TEST_CASE("executor: ironicQPS holds per request across workers and the observer, and is reached")
    {
        // 8 workers running 3-request actions while an observer lists
        // nodes and ports page by page, all through one connection's limiter.
        metalsync::test::CountingIronic ironic(4);
        IronicConnection connection;
        connection.endpoint = ironic.url();
        connection.rate_limiter = std::make_shared<RateLimiter>(1);  // the daemon's start value; set by the executor
        ExecutorLimits limits;
        limits.ironic_qps = 40;
        limits.per_bmc = 16;
        limits.max_provisioning = 1000;
        limits.workers = 8;
        Executor e(limits, ironic_runner(connection));
        e.use_rate_limiter(connection.rate_limiter);
        CHECK(connection.rate_limiter->rate() == 40);
        const double burst = connection.rate_limiter->burst();
        e.start();
        std::atomic<bool> done{false};
        std::atomic<int> observations{0};
        std::thread observer([&] {
            IronicClient client(connection);
            client.set_page_size(1);
            while (!done) {
                if (client.observe()) ++observations;
            }
        });
        std::vector<QueuedAction> wanted;
        for (int i = 0; i < 40; ++i) {
            wanted.push_back(action("n" + std::to_string(i), "", false));
        }
        e.replace_queue(wanted);
        std::vector<Completion> completions;
        metalsync::test::wait_until([&] {
            for (auto& c : e.take_completions()) completions.push_back(std::move(c));
            return completions.size() >= 40;
        }, 60s);
        done = true;
        observer.join();
        e.stop(5s);
        REQUIRE(completions.size() == 40);
        for (const auto& c : completions) {
            INFO(c.item.action.node << ": " << c.result.error);
            CHECK(c.result.ok);
        }
        CHECK(observations > 0);  // the observer was not starved by the workers
        // Every request reached the server through the limiter: 3 per action,
        // a version negotiation per client, 8 per observation (4 pages of
        // GET /v1/nodes, 4 of GET /v1/ports).
        CHECK(ironic.count_with_prefix("GET /v1/nodes/") == 40);
        CHECK(ironic.count_with_prefix("PUT /v1/nodes/") == 40);
        CHECK(ironic.count_with_prefix("DELETE /v1/nodes/") == 40);
        CHECK(ironic.count() == connection.rate_limiter->tokens_taken());
        const auto arrivals = ironic.arrivals();
        for (auto window : {250ms, 1000ms, 2000ms}) {
            INFO("window " << window.count() << " ms");
            const double allowed = 40 * std::chrono::duration<double>(window).count() + burst + metalsync::test::jitter_allowance(40);
            CHECK(static_cast<double>(metalsync::test::most_in_window(arrivals, window)) <= allowed);
        }
        // Saturated (more work than the rate allows): close to the rate.
        CHECK(metalsync::test::observed_rate(arrivals) >= 0.8 * 40);
    }

    TEST_CASE("executor: an action held by an empty shared bucket waits on ironicQPS")
    {
        metalsync::test::CountingIronic ironic(1);
        IronicConnection connection;
        connection.endpoint = ironic.url();
        connection.rate_limiter = std::make_shared<RateLimiter>(0.05, 1);  // a token every 20 s
        ExecutorLimits limits;
        limits.ironic_qps = 0.05;
        limits.workers = 2;
        Executor e(limits, ironic_runner(connection));
        e.use_rate_limiter(connection.rate_limiter);
        // The observer has just taken the only token.
        REQUIRE(IronicClient(connection).negotiate().has_value());
        e.start();
        e.replace_queue({action("n1", "", false)});
        CHECK(metalsync::test::wait_until([&] {
            auto waits = e.waits();
            return waits.contains("n1") && waits["n1"].waiting_on.starts_with("ironicQPS (0.05 requests/s)");
        }, 10s));
        CHECK(e.stats().saturated == std::vector<std::string>{"ironicQPS"});
        CHECK(ironic.count() == 1);
        // A config reload raising the limit reaches the shared bucket.
        auto raised = limits;
        raised.ironic_qps = 100;
        e.set_limits(raised);
        CHECK(connection.rate_limiter->rate() == 100);
        REQUIRE(drain(e, 1) == 1);
        CHECK(ironic.count() == 1 + 1 + 3);  // the worker's client negotiates, then its 3 requests
        e.stop(5s);
    }

    TEST_CASE("executor: stop does not wait for tokens that would come after the grace")
    {
        metalsync::test::CountingIronic ironic(1);
        IronicConnection connection;
        connection.endpoint = ironic.url();
        connection.rate_limiter = std::make_shared<RateLimiter>(0.01, 1);  // one token now, the next in 100 s
        ExecutorLimits limits;
        limits.ironic_qps = 0.01;
        limits.workers = 1;
        Executor e(limits, ironic_runner(connection));
        e.use_rate_limiter(connection.rate_limiter);
        e.start();
        e.replace_queue({action("n1", "", false)});
        // The action's first request (negotiation) used the token; the next waits.
        REQUIRE(metalsync::test::wait_until([&] { return ironic.count() == 1; }, 10s));
        auto left = e.stop(200ms);
        CHECK(left.empty());
        auto completions = e.take_completions();
        REQUIRE(completions.size() == 1);
        CHECK_FALSE(completions[0].result.ok);
        CHECK(completions[0].result.error.find("shutting down") != std::string::npos);
        CHECK(ironic.count() == 1);
        // The limiter is usable again (it may be shared with the observer).
        connection.rate_limiter->set_rate(1000);
        CHECK(connection.rate_limiter->acquire(std::chrono::steady_clock::now() + 10s) == RateLimiter::Outcome::granted);
    }
}

TEST_SUITE("daemon")
{
    TEST_CASE("executor: the finish hook records an outcome on the worker before the loop takes the completion")
    {
        std::mutex mutex;
        std::vector<std::string> recorded;  // what a crash right after the run would still find recorded
        std::atomic<bool> release{false};
        Executor e(
            ExecutorLimits{1000, 20, 1, 1},
            [&]() -> Executor::Runner {
                return [&](const Action& a) {
                    ActionResult r;
                    r.ok = a.node != "broken";
                    r.error = r.ok ? "" : "Ironic said no";
                    return r;
                };
            },
            {},
            [&](QueuedAction& item, const ActionResult& result) {
                {
                    std::lock_guard lock(mutex);
                    recorded.push_back(item.action.node + (result.ok ? ":ok" : ":" + result.error));
                }
                item.recorded = true;
                while (!release.load()) std::this_thread::sleep_for(1ms);  // the loop has not looked yet
            });
        // A failed REQUIRE must not leave a worker blocked in the hook while the executor joins it.
        struct Release {
            std::atomic<bool>& flag;
            ~Release() { flag = true; }
        } release_on_exit{release};
        e.start();
        for (const std::string node : {"n1", "broken"}) {
            release = false;
            auto replaced = e.replace_queue({action(node, "", false)});
            CHECK(replaced.added.size() == 1);
            REQUIRE(metalsync::test::wait_until(
                [&] {
                    std::lock_guard lock(mutex);
                    return !recorded.empty() && recorded.back().starts_with(node + ":");
                },
                5s));
            CHECK(e.take_completions().empty());  // recorded, not yet handed to the loop
            release = true;
            std::vector<Completion> all;
            REQUIRE(metalsync::test::wait_until(
                [&] {
                    for (auto& c : e.take_completions()) all.push_back(std::move(c));
                    return all.size() == 1;
                },
                5s));
            CHECK(all[0].item.recorded);
        }
        CHECK(recorded == std::vector<std::string>{"n1:ok", "broken:Ironic said no"});
        e.stop(1s);
    }
}
