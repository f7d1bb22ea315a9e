#pragma once
/// The `reber` task: language modelling of the embedded Reber grammar, and the grammar itself
/// (its recogniser gives the legal successors the task is measured by).

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <unfold/framework/random.hpp>

#include "apps/task.hpp"

namespace unfold::app
{

/// The embedded Reber grammar (Hochreiter & Schmidhuber 1997): B, then T or P, then a Reber
/// string (B … E), then the same T or P again, then E; e.g. "BTBPVVETE". Recognised by a
/// deterministic automaton, which also gives the legal successors of any prefix.
class reber_grammar
{
public:
    /// Where a recogniser stands after a prefix. phase: 0 start, 1 after the outer B, 2 inside
    /// the inner string (at `node`), 3 after the inner E, 4 after the repeated branch, 5 accepted.
    struct position
    {
        int phase = 0;
        int node = 0;
        char branch = 0;
    };

    /// The inner Reber graph: node → (symbol, next node), two choices per node but the last.
    /// Node 0 is before the inner B; node 7 is after the inner E.
    static const std::vector<std::pair<char, int>>& edges(int node)
    {
        static const std::vector<std::vector<std::pair<char, int>>> table = {
            {{'B', 1}},           // 0
            {{'T', 2}, {'P', 3}}, // 1
            {{'S', 2}, {'X', 4}}, // 2
            {{'T', 3}, {'V', 5}}, // 3
            {{'X', 3}, {'S', 6}}, // 4
            {{'P', 4}, {'V', 6}}, // 5
            {{'E', 7}},           // 6
            {},                   // 7
        };
        return table.at(std::size_t(node));
    }

    /// The position after symbol c, or nothing if c is not allowed there.
    static std::optional<position> advance(position p, char c)
    {
        switch (p.phase)
        {
            case 0:
                return c == 'B' ? std::optional<position>(position{1, 0, 0}) : std::nullopt;
            case 1:
                return c == 'T' || c == 'P' ? std::optional<position>(position{2, 0, c})
                                            : std::nullopt;
            case 2:
                for (const auto& [symbol, next] : edges(p.node))
                    if (symbol == c)
                        return next == 7 ? position{3, 0, p.branch} : position{2, next, p.branch};
                return std::nullopt;
            case 3:
                return c == p.branch ? std::optional<position>(position{4, 0, p.branch})
                                     : std::nullopt;
            case 4:
                return c == 'E' ? std::optional<position>(position{5, 0, p.branch}) : std::nullopt;
            default:
                return std::nullopt;
        }
    }
    /// The symbols allowed after position p ("" once accepted: only the end may follow).
    static std::string successors(const position& p)
    {
        switch (p.phase)
        {
            case 0:
                return "B";
            case 1:
                return "TP";
            case 2:
            {
                std::string s;
                for (const auto& e : edges(p.node))
                    s += e.first;
                return s;
            }
            case 3:
                return std::string(1, p.branch);
            case 4:
                return "E";
            default:
                return "";
        }
    }
    /// Whether `s` is a complete embedded Reber string.
    static bool accepts(const std::string& s)
    {
        position p;
        for (char c : s)
        {
            const auto next = advance(p, c);
            if (!next)
                return false;
            p = *next;
        }
        return p.phase == 5;
    }
    /// A random embedded Reber string, every choice fair.
    static std::string generate(generator& g)
    {
        const char branch = g.next_double() < 0.5 ? 'T' : 'P';
        std::string s = "B";
        s += branch;
        int node = 0;
        while (node != 7)
        {
            const auto& e = edges(node);
            const auto& pick = e[e.size() == 1 ? 0 : uniform_index(g, 2)];
            s += pick.first;
            node = pick.second;
        }
        return s + branch + "E";
    }
};

/// Language modelling of embedded Reber strings: the prompt is empty, the answer the string.
class reber_task final : public task
{
public:
    explicit reber_task(std::size_t held_out_count = 300)
    {
        m_vocab = vocabulary({"B", "T", "P", "S", "X", "V", "E"});
        make_held_out(held_out_count, 0x4eb);
    }
    std::string name() const override { return "reber"; }
    /// Training strings may repeat held-out ones: the grammar has few short strings, and the
    /// metrics (legal successors, valid generations) measure the grammar, not memorisation.
    example draw(generator& g) const override { return fresh(g); }
    bool correct(const example&, const std::string& text) const override
    {
        return reber_grammar::accepts(text);
    }

protected:
    example fresh(generator& g) const override { return {"", reber_grammar::generate(g)}; }
};

} // namespace unfold::app
