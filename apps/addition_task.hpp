#pragma once
/// The `addition` task: "37+85=" → "122".

#include <cstddef>
#include <string>

#include <unfold/framework/error.hpp>
#include <unfold/framework/random.hpp>

#include "apps/task.hpp"

namespace unfold::app
{

/// "a+b=" → "a+b" in decimal: operands uniform in [0, 10^digits).
class addition_task final : public task
{
public:
    explicit addition_task(std::size_t digits = 2, std::size_t held_out_count = 1000)
        : m_digits(digits)
    {
        UNFOLD_CHECK(digits >= 1 && digits <= 9, "addition: digits must be in [1, 9], got {}",
                     digits);
        std::size_t n = 1;
        for (std::size_t i = 0; i < digits; ++i)
            n *= 10;
        m_limit = n;
        UNFOLD_CHECK(held_out_count * 4 <= n * n,
                     "addition: {} held-out problems is too many for {}-digit operands",
                     held_out_count, digits);
        m_vocab = vocabulary({"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "+", "="});
        make_held_out(held_out_count, 0xadd);
    }
    std::string name() const override { return "addition"; }
    example draw(generator& g) const override { return draw_training(g); }
    std::size_t digits() const { return m_digits; }

    /// Whether "a+b=c" is a correct sum of decimal numbers (for the data tests).
    static bool valid_sum(const std::string& s)
    {
        const auto plus = s.find('+'), eq = s.find('=');
        if (plus == std::string::npos || eq == std::string::npos || plus == 0 || eq < plus + 2 ||
            eq + 1 >= s.size())
            return false;
        const std::string a = s.substr(0, plus), b = s.substr(plus + 1, eq - plus - 1),
                          c = s.substr(eq + 1);
        for (const auto& part : {a, b, c})
            if (part.find_first_not_of("0123456789") != std::string::npos ||
                (part.size() > 1 && part[0] == '0'))
                return false;
        return std::stoull(a) + std::stoull(b) == std::stoull(c);
    }

protected:
    example fresh(generator& g) const override
    {
        const std::size_t a = uniform_index(g, m_limit), b = uniform_index(g, m_limit);
        return {std::to_string(a) + "+" + std::to_string(b) + "=", std::to_string(a + b)};
    }

private:
    std::size_t m_digits;
    std::size_t m_limit = 100;
};

} // namespace unfold::app
