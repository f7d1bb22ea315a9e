#pragma once
/// The `copy` task: "cbad|" → "cbad".

#include <cstddef>
#include <string>
#include <vector>

#include <unfold/framework/error.hpp>
#include <unfold/framework/random.hpp>

#include "apps/task.hpp"

namespace unfold::app
{

/// "s|" → "s" for a random string s of 1..max_length symbols from an alphabet of `symbols`
/// letters (a, b, c, ...).
class copy_task final : public task
{
public:
    explicit copy_task(std::size_t max_length = 8, std::size_t symbols = 6,
                       std::size_t held_out_count = 500)
        : m_max_length(max_length)
        , m_symbols(symbols)
    {
        UNFOLD_CHECK(max_length >= 1 && symbols >= 2 && symbols <= 26,
                     "copy: needs max_length ≥ 1 and 2..26 symbols");
        std::vector<std::string> chars;
        for (std::size_t i = 0; i < symbols; ++i)
            chars.push_back(std::string(1, char('a' + i)));
        chars.push_back("|");
        m_vocab = vocabulary(chars);
        make_held_out(held_out_count, 0xc0b1);
    }
    std::string name() const override { return "copy"; }
    example draw(generator& g) const override { return draw_training(g); }

protected:
    example fresh(generator& g) const override
    {
        const std::size_t len = 1 + uniform_index(g, m_max_length);
        std::string s;
        for (std::size_t i = 0; i < len; ++i)
            s += char('a' + uniform_index(g, m_symbols));
        return {s + "|", s};
    }

private:
    std::size_t m_max_length;
    std::size_t m_symbols;
};

} // namespace unfold::app
