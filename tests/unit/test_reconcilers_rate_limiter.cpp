// limits.ironicQPS per request: the shared RateLimiter on its own, and the
// Ironic client taking a token for every request it sends (negotiation, list
// pages, each client made from one connection), counted by the server.

#include <atomic>
#include <future>
#include <thread>

#include <doctest/doctest.h>

#include "reconcilers/http/rate_limiter.hpp"
#include "reconcilers/ironic/ironic_client.hpp"
#include "tests/unit/counting_ironic.hpp"

using namespace metalsync;
using namespace metalsync::test;
using namespace std::chrono_literals;

namespace {

auto far_deadline()
{
    return std::chrono::steady_clock::now() + 60s;
}

} // namespace

TEST_SUITE("reconcilers")
{
    TEST_CASE("rate limiter: burst is small, at least two, and follows the rate")
    {
        RateLimiter limiter(10);
        CHECK(limiter.burst() == 2);
        limiter.set_rate(1000);
        CHECK(limiter.burst() == 50);
        RateLimiter fixed(1000, 1);
        fixed.set_rate(5);
        CHECK(fixed.burst() == 1);
    }

    TEST_CASE("rate limiter: a prepaid token serves that thread's next request, and only that thread's")
    {
        RateLimiter limiter(0.01, 1); // one token, the next in 100 s
        REQUIRE(limiter.try_prepay());
        CHECK(limiter.try_prepay()); // same thread, already prepaid: no second token taken
        CHECK(limiter.tokens_taken() == 1);
        // Another thread finds the bucket empty.
        auto other = std::async(std::launch::async, [&] { return limiter.try_prepay(); });
        CHECK_FALSE(other.get());
        CHECK(limiter.acquire(far_deadline()) == RateLimiter::Outcome::granted);
        CHECK(limiter.tokens_taken() == 1); // not charged twice
        CHECK(limiter.acquire(std::chrono::steady_clock::now() + 50ms) == RateLimiter::Outcome::timed_out);
        REQUIRE(limiter.time_until_free() > 10s);
    }

    TEST_CASE("rate limiter: an unused prepaid token is forfeited")
    {
        RateLimiter limiter(0.01, 1);
        REQUIRE(limiter.try_prepay());
        limiter.forfeit_prepaid();
        CHECK(limiter.acquire(std::chrono::steady_clock::now() + 20ms) == RateLimiter::Outcome::timed_out);
    }

    TEST_CASE("rate limiter: a new rate reaches a request already waiting")
    {
        RateLimiter limiter(0.01, 1);
        REQUIRE(limiter.acquire(far_deadline()) == RateLimiter::Outcome::granted);
        auto waiter = std::async(std::launch::async, [&] { return limiter.acquire(far_deadline()); });
        CHECK(waiter.wait_for(100ms) == std::future_status::timeout);
        limiter.set_rate(1000); // a config reload loosening the limit
        REQUIRE(waiter.wait_for(10s) == std::future_status::ready);
        CHECK(waiter.get() == RateLimiter::Outcome::granted);
    }

    TEST_CASE("rate limiter: interrupt ends every wait, resume allows requests again")
    {
        RateLimiter limiter(0.01, 1);
        REQUIRE(limiter.acquire(far_deadline()) == RateLimiter::Outcome::granted);
        std::vector<std::future<RateLimiter::Outcome>> waiters;
        for (int i = 0; i < 3; ++i) {
            waiters.push_back(std::async(std::launch::async, [&] { return limiter.acquire(far_deadline()); }));
        }
        limiter.interrupt();
        for (auto& w : waiters) {
            REQUIRE(w.wait_for(10s) == std::future_status::ready);
            CHECK(w.get() == RateLimiter::Outcome::interrupted);
        }
        CHECK_FALSE(limiter.try_prepay());
        limiter.resume();
        limiter.set_rate(1000);
        CHECK(limiter.acquire(far_deadline()) == RateLimiter::Outcome::granted);
    }

    TEST_CASE("ironic client: every request of an observation takes a token, pages included")
    {
        CountingIronic ironic(12);
        IronicConnection connection;
        connection.endpoint = ironic.url();
        const double rate = 25;
        connection.rate_limiter = std::make_shared<RateLimiter>(rate);
        const double burst = connection.rate_limiter->burst();
        IronicClient observer(connection);
        observer.set_page_size(1);
        auto observed = observer.observe();
        REQUIRE(observed.has_value());
        CHECK(observed->nodes.size() == 12);
        // GET / (negotiation), 12 node pages, 12 port pages.
        CHECK(ironic.count() == 25);
        CHECK(ironic.count_with_prefix("GET /v1/nodes?") == 12);
        CHECK(ironic.count_with_prefix("GET /v1/ports?") == 12);
        CHECK(connection.rate_limiter->tokens_taken() == ironic.count());
        // Counted where they arrive: any window holds at most rate * window +
        // burst, give or take the jitter allowance.
        for (auto window : {200ms, 500ms, 1000ms}) {
            INFO("window " << window.count() << " ms");
            const double allowed =
                rate * std::chrono::duration<double>(window).count() + burst + jitter_allowance(rate);
            CHECK(static_cast<double>(most_in_window(ironic.arrivals(), window)) <= allowed);
        }
    }

    TEST_CASE("ironic client: clients made from one connection share one budget")
    {
        CountingIronic ironic(6);
        IronicConnection connection;
        connection.endpoint = ironic.url();
        const double rate = 30;
        connection.rate_limiter = std::make_shared<RateLimiter>(rate);
        const double burst = connection.rate_limiter->burst();
        // Four clients in parallel, as the observer and the executor's workers.
        std::vector<std::thread> threads;
        std::atomic<int> failures{0};
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&connection, &failures] {
                IronicClient client(connection);
                client.set_page_size(1);
                for (int i = 0; i < 2; ++i) {
                    if (!client.observe()) {
                        ++failures;
                    }
                    if (!client.set_power_state("n1", "power on")) {
                        ++failures;
                    }
                }
            });
        }
        for (auto& t : threads) {
            t.join();
        }
        CHECK(failures == 0);
        // Each client: GET /, then twice (6 node pages, 6 port pages, one PUT).
        CHECK(ironic.count() == 4 * (1 + 2 * 13));
        for (auto window : {250ms, 1000ms}) {
            INFO("window " << window.count() << " ms");
            const double allowed =
                rate * std::chrono::duration<double>(window).count() + burst + jitter_allowance(rate);
            CHECK(static_cast<double>(most_in_window(ironic.arrivals(), window)) <= allowed);
        }
        // Saturated: close to the configured rate, not far under it.
        CHECK(observed_rate(ironic.arrivals()) >= 0.8 * rate);
    }
}
