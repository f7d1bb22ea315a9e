#pragma once
/// The tasks `unfold train` learns, none of which needs a download: `addition` ("37+85=122"),
/// `copy` ("cbad|cbad"), `reber` (the embedded Reber grammar) and a character-level language model
/// of any UTF-8 text file. Each example is a prompt and an answer over a character vocabulary;
/// the model reads "<s>" + prompt and must write answer + "</s>" (Note [Examples as batches]).
///
/// Note [Examples as batches]
/// An example (prompt p, answer a) becomes the tokens  <s> p₁ … p_m a₁ … a_n </s>. The decoder is
/// fed every token but the last and predicts every token but the first; the predictions of prompt
/// tokens carry no loss (their targets are token_batch::ignore_index), so the model is trained,
/// and measured, on writing the answer. Sequences of a batch are padded at the end with <pad>
/// inputs and ignored targets. Under free running the decoder feeds its own output exactly where
/// it made a counted prediction: after the prompt (models/decoder.hpp).

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <unfold/framework/checkpoint.hpp>
#include <unfold/framework/error.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/models/decoder.hpp>

namespace unfold::app
{

/// The characters (code points, as UTF-8 strings) of `text`; throws unfold::error naming `what`
/// at the first byte that is not valid UTF-8.
inline std::vector<std::string> utf8_chars(const std::string& text, const std::string& what)
{
    const std::size_t bad = unfold::detail::invalid_utf8_at(text);
    UNFOLD_CHECK(bad == std::string::npos, "{}: not valid UTF-8 (byte 0x{:02x} at offset {})", what,
                 static_cast<unsigned char>(text[bad == std::string::npos ? 0 : bad]), bad);
    std::vector<std::string> out;
    for (std::size_t i = 0; i < text.size();)
    {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        const std::size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
        out.push_back(text.substr(i, len));
        i += len;
    }
    return out;
}

/// Token ids for characters, with three special tokens first: <pad> 0, <s> 1, </s> 2.
class vocabulary
{
public:
    static constexpr std::size_t pad = 0, bos = 1, eos = 2;

    vocabulary() = default;
    /// The specials followed by `chars` (distinct characters, in the order given).
    explicit vocabulary(const std::vector<std::string>& chars)
    {
        m_symbols = {"<pad>", "<s>", "</s>"};
        for (const auto& c : chars)
        {
            UNFOLD_CHECK(!m_ids.count(c), "vocabulary: the character '{}' is listed twice", c);
            m_ids[c] = m_symbols.size();
            m_symbols.push_back(c);
        }
    }
    /// Every distinct character of `text`, sorted (by UTF-8 bytes, i.e. by code point).
    static vocabulary of_text(const std::vector<std::string>& chars)
    {
        std::set<std::string> distinct(chars.begin(), chars.end());
        return vocabulary(std::vector<std::string>(distinct.begin(), distinct.end()));
    }

    std::size_t size() const { return m_symbols.size(); }
    bool contains(const std::string& c) const { return m_ids.count(c) > 0; }
    std::size_t id(const std::string& c) const
    {
        const auto found = m_ids.find(c);
        UNFOLD_CHECK(found != m_ids.end(), "the character '{}' is not in the vocabulary", c);
        return found->second;
    }
    const std::string& symbol(std::size_t id) const { return m_symbols.at(id); }

    /// The ids of the characters of a UTF-8 string.
    std::vector<std::size_t> encode(const std::string& text) const
    {
        std::vector<std::size_t> out;
        for (const auto& c : utf8_chars(text, "text to encode"))
            out.push_back(id(c));
        return out;
    }
    /// The characters of `ids`, stopping at </s>; <s> and <pad> are skipped.
    std::string decode(const std::vector<std::size_t>& ids) const
    {
        std::string out;
        for (std::size_t i : ids)
        {
            if (i == eos)
                break;
            if (i != bos && i != pad && i < size())
                out += m_symbols[i];
        }
        return out;
    }

    /// The characters (without the specials) as a JSON array, for checkpoint metadata.
    std::string to_json() const
    {
        return nlohmann::json(std::vector<std::string>(m_symbols.begin() + 3, m_symbols.end()))
            .dump();
    }
    static vocabulary from_json(const std::string& text)
    {
        nlohmann::json j;
        try
        {
            j = nlohmann::json::parse(text);
        }
        catch (const nlohmann::json::exception&)
        {
            unfold::fail("the checkpoint's vocabulary is not a JSON array of strings");
        }
        UNFOLD_CHECK(j.is_array(), "the checkpoint's vocabulary is not a JSON array of strings");
        std::vector<std::string> chars;
        for (const auto& c : j)
        {
            UNFOLD_CHECK(c.is_string(), "the checkpoint's vocabulary holds a non-string");
            chars.push_back(c.get<std::string>());
        }
        return vocabulary(chars);
    }

private:
    std::vector<std::string> m_symbols;
    std::map<std::string, std::size_t> m_ids;
};

/// One example: the model reads "<s>" + prompt and must write answer + "</s>".
struct example
{
    std::string prompt;
    std::string answer;
    bool operator<(const example& o) const
    {
        return prompt != o.prompt ? prompt < o.prompt : answer < o.answer;
    }
};

/// A padded batch of examples (Note [Examples as batches]).
inline token_batch make_batch(const vocabulary& v, const std::vector<example>& examples)
{
    UNFOLD_CHECK(!examples.empty(), "make_batch: no examples");
    std::vector<std::vector<std::size_t>> tokens;
    std::vector<std::size_t> prompt_len;
    std::size_t longest = 0;
    for (const auto& e : examples)
    {
        std::vector<std::size_t> seq{vocabulary::bos};
        const auto p = v.encode(e.prompt);
        const auto a = v.encode(e.answer);
        seq.insert(seq.end(), p.begin(), p.end());
        seq.insert(seq.end(), a.begin(), a.end());
        seq.push_back(vocabulary::eos);
        prompt_len.push_back(p.size());
        longest = std::max(longest, seq.size());
        tokens.push_back(std::move(seq));
    }
    token_batch b;
    b.steps = longest - 1;
    b.batch = examples.size();
    b.inputs.assign(b.steps * b.batch, vocabulary::pad);
    b.targets.assign(b.steps * b.batch, token_batch::ignore_index);
    for (std::size_t s = 0; s < b.batch; ++s)
        for (std::size_t k = 0; k + 1 < tokens[s].size(); ++k)
        {
            b.inputs[k * b.batch + s] = tokens[s][k];
            if (k >= prompt_len[s]) // the target tokens[s][k + 1] is past the prompt
                b.targets[k * b.batch + s] = std::int64_t(tokens[s][k + 1]);
        }
    return b;
}

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

/// Reads a whole file; throws unfold::error naming it (and why) when it cannot be read.
inline std::string read_file(const std::string& path)
{
    std::error_code ec;
    UNFOLD_CHECK(!std::filesystem::is_directory(path, ec), "cannot read {}: it is a directory",
                 path);
    std::ifstream in(path, std::ios::binary);
    UNFOLD_CHECK(in.good(), "cannot read {}: {}", path, std::strerror(errno));
    std::ostringstream s;
    s << in.rdbuf();
    UNFOLD_CHECK(!in.bad(), "cannot read {}", path);
    return s.str();
}

/// A character-level corpus: the characters of a UTF-8 file, split 90/10 into training and
/// validation text, with the vocabulary of every character in it.
struct text_corpus
{
    vocabulary vocab;
    std::vector<std::size_t> train;
    std::vector<std::size_t> valid;

    /// Throws unfold::error naming the file when it is unreadable, not UTF-8 or too short.
    static text_corpus load(const std::string& path) { return parse(read_file(path), path); }

    /// The corpus of `bytes`, the contents of a file called `name` (for messages); throws
    /// unfold::error when they are not UTF-8 or too short.
    static text_corpus parse(const std::string& bytes, const std::string& name)
    {
        const std::string& path = name;
        const std::vector<std::string> chars = utf8_chars(bytes, path);
        UNFOLD_CHECK(chars.size() >= 100, "{}: only {} characters; a text needs at least 100", path,
                     chars.size());
        text_corpus c;
        c.vocab = vocabulary::of_text(chars);
        const std::size_t split = chars.size() * 9 / 10;
        for (std::size_t i = 0; i < chars.size(); ++i)
            (i < split ? c.train : c.valid).push_back(c.vocab.id(chars[i]));
        return c;
    }
};

/// `batch` parallel streams over `text` in chunks of `steps` (truncated BPTT): chunk k of stream
/// b covers text[b·L + k·steps, …) with L = |text| / batch. Inputs are the text, targets the next
/// character; every target counts.
class text_stream
{
public:
    text_stream(const std::vector<std::size_t>& text, std::size_t batch, std::size_t steps)
        : m_text(&text)
        , m_batch(batch)
        , m_steps(steps)
    {
        UNFOLD_CHECK(batch >= 1 && steps >= 1, "text: batch and TBPTT length must be positive");
        m_stream_length = text.size() / batch;
        UNFOLD_CHECK(m_stream_length > steps,
                     "text: {} characters are too few for {} streams of chunks of {}", text.size(),
                     batch, steps);
    }
    /// Chunks per pass over the text.
    std::size_t chunks() const { return (m_stream_length - 1) / m_steps; }
    /// Chunk k (0 ≤ k < chunks()).
    token_batch chunk(std::size_t k) const
    {
        token_batch b;
        b.steps = m_steps;
        b.batch = m_batch;
        b.inputs.resize(m_steps * m_batch);
        b.targets.resize(m_steps * m_batch);
        for (std::size_t t = 0; t < m_steps; ++t)
            for (std::size_t s = 0; s < m_batch; ++s)
            {
                const std::size_t at = s * m_stream_length + k * m_steps + t;
                b.inputs[t * m_batch + s] = (*m_text)[at];
                b.targets[t * m_batch + s] = std::int64_t((*m_text)[at + 1]);
            }
        return b;
    }

private:
    const std::vector<std::size_t>* m_text;
    std::size_t m_batch;
    std::size_t m_steps;
    std::size_t m_stream_length;
};

/// The built-in task called `name` ("addition", "copy", "reber"); throws for any other name.
/// `digits` is the operand length of addition (1: 20 of its 100 problems are held out; more:
/// 1000 are).
inline std::unique_ptr<task> make_task(const std::string& name, std::size_t digits = 2)
{
    if (name == "addition")
        return std::make_unique<addition_task>(digits, digits == 1 ? 20 : 1000);
    if (name == "copy")
        return std::make_unique<copy_task>();
    if (name == "reber")
        return std::make_unique<reber_task>();
    unfold::fail(fmt::format("unknown task '{}' (expected addition, copy or reber)", name));
}

} // namespace unfold::app
