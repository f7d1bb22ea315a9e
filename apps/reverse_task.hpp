#pragma once
/// The `reverse` task, a small translation: "31415=" → "51413". Every output position depends on
/// an input position far away (the first digit written is the last one read), which is what an
/// encoder–decoder's attention finds and a fixed-size state must remember.

#include <cstddef>
#include <string>
#include <vector>

#include <unfold/framework/error.hpp>
#include <unfold/framework/random.hpp>

#include "apps/task.hpp"

namespace unfold::app
{

/// "s=" → s reversed, for a random string s of 1..max_length digits.
class reverse_task final : public task
{
public:
    explicit reverse_task(std::size_t max_length = 15, std::size_t held_out_count = 1000)
        : m_max_length(max_length)
    {
        UNFOLD_CHECK(max_length >= 1 && max_length <= 1000,
                     "reverse: the longest string must have 1 to 1000 digits, not {}", max_length);
        m_vocab = vocabulary({"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "="});
        make_held_out(held_out_count, 0x5e7e);
    }
    std::string name() const override { return "reverse"; }
    example draw(generator& g) const override { return draw_training(g); }

protected:
    example fresh(generator& g) const override
    {
        const std::size_t len = 1 + uniform_index(g, m_max_length);
        std::string s;
        for (std::size_t i = 0; i < len; ++i)
            s += char('0' + uniform_index(g, 10));
        return {s + "=", std::string(s.rbegin(), s.rend())};
    }

private:
    std::size_t m_max_length;
};

} // namespace unfold::app
