#pragma once

// Retrying one adapter call: NodeLocked quickly (the node is busy for a few
// seconds), other retryable errors (503, transport) with exponential backoff
// and jitter; non-retryable errors at once. The sleep is injected so tests do
// not wait and the daemon can make it interruptible by shutdown.

#include <algorithm>
#include <chrono>
#include <functional>
#include <random>
#include <thread>

#include "reconcilers/http/api_error.hpp"

namespace metalsync {

struct RetryPolicy {
    int max_locked_retries = 10;  // NodeLocked answers retried, at locked_min..locked_max apart
    std::chrono::milliseconds locked_min{2000};
    std::chrono::milliseconds locked_max{3000};
    int max_retries = 4;  // other retryable errors
    std::chrono::milliseconds initial_backoff{1000};
    std::chrono::milliseconds max_backoff{30'000};
    // Returns false to stop retrying (shutdown requested).
    std::function<bool(std::chrono::milliseconds)> sleep = [](std::chrono::milliseconds d) {
        std::this_thread::sleep_for(d);
        return true;
    };
    unsigned seed = std::random_device{}();
};

// Calls `fn` (returning ApiResult<T>) until it succeeds, fails for good, or
// the policy's attempts run out; returns the last result.
template <class Fn>
auto retry_call(Fn&& fn, const RetryPolicy& policy) -> decltype(fn())
{
    std::mt19937 random(policy.seed);
    auto between = [&random](std::chrono::milliseconds low, std::chrono::milliseconds high) {
        std::uniform_int_distribution<long long> dist(low.count(), std::max(low.count(), high.count()));
        return std::chrono::milliseconds(dist(random));
    };
    int locked = 0;
    int other = 0;
    auto backoff = policy.initial_backoff;
    while (true) {
        auto result = fn();
        if (result || !result.error().retryable) {
            return result;
        }
        std::chrono::milliseconds delay{};
        if (result.error().node_locked) {
            if (++locked > policy.max_locked_retries) {
                return result;
            }
            delay = between(policy.locked_min, policy.locked_max);
        } else {
            if (++other > policy.max_retries) {
                return result;
            }
            // Jitter in [backoff/2, backoff], so many workers do not retry in step.
            delay = between(backoff / 2, backoff);
            backoff = std::min(backoff * 2, policy.max_backoff);
        }
        if (!policy.sleep(delay)) {
            return result;
        }
    }
}

} // namespace metalsync
