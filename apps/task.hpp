#pragma once
/// What a built-in task is: a vocabulary, random training examples and a fixed held-out set
/// (Note [Examples as batches] in models/batching.hpp); the metric validation reports; and
/// uniform_index, the one random draw the tasks share.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <unfold/framework/random.hpp>

#include <unfold/models/batching.hpp>
#include <unfold/models/vocabulary.hpp>

namespace unfold::app
{

/// A validation metric: a name and a value in [0, 1] (higher is better) or a loss.
struct metric
{
    std::string name;
    double value;
};

/// A built-in task: its vocabulary, random training examples, and a fixed held-out set that
/// training never draws from.
class task
{
public:
    virtual ~task() = default;
    virtual std::string name() const = 0;
    const vocabulary& vocab() const { return m_vocab; }
    /// A random training example (never one of the held-out set).
    virtual example draw(generator& g) const = 0;
    /// The fixed held-out examples.
    const std::vector<example>& held_out() const { return m_held_out; }
    /// Whether `text` (an answer the model wrote for `e`) is correct; by default an exact match.
    virtual bool correct(const example& e, const std::string& text) const
    {
        return text == e.answer;
    }

protected:
    /// Draws `count` distinct held-out examples with a fixed seed (the same set in every run).
    void make_held_out(std::size_t count, std::uint64_t seed)
    {
        generator g(seed);
        std::set<example> seen;
        std::size_t attempts = 0;
        while (m_held_out.size() < count && attempts++ < 100 * count)
        {
            example e = fresh(g);
            if (seen.insert(e).second)
                m_held_out.push_back(e);
        }
        m_held_set = seen;
    }
    bool is_held_out(const example& e) const { return m_held_set.count(e) > 0; }
    /// An example drawn from the task's distribution, held out or not.
    virtual example fresh(generator& g) const = 0;
    /// fresh() until it is not held out.
    example draw_training(generator& g) const
    {
        for (;;)
        {
            example e = fresh(g);
            if (!is_held_out(e))
                return e;
        }
    }

    vocabulary m_vocab;
    std::vector<example> m_held_out;
    std::set<example> m_held_set;
};

/// A uniform integer in [0, n).
inline std::size_t uniform_index(generator& g, std::size_t n)
{
    return std::min(n - 1, std::size_t(g.next_double() * double(n)));
}

} // namespace unfold::app
