// The executor's limits, counted by the runner (the stand-in for Ironic),
// not by the executor itself: per-BMC concurrency, nodes provisioning at
// once, requests per second, one action per node; and queue replacement.

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "daemon/executor.hpp"
#include "tests/support/test_support.hpp"

using namespace metalsync;
using namespace std::chrono_literals;

namespace {

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

    TEST_CASE("executor: the request rate stays within the token bucket and reaches close to it")
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
        // In any one-second window: at most the burst (20) plus the rate (20).
        std::sort(c.starts.begin(), c.starts.end());
        for (std::size_t i = 0; i < c.starts.size(); ++i) {
            std::size_t j = i;
            while (j < c.starts.size() && c.starts[j] - c.starts[i] < 1s) ++j;
            CHECK(j - i <= 40);
        }
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
}
