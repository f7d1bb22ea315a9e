#pragma once
/// Characters and their token ids: UTF-8 text decoded into characters, and the vocabulary of a
/// character-level model (three special tokens, then the characters), with its JSON form for a
/// checkpoint's metadata. What `unfold train` uses, for a model of any cell.

#include <algorithm>
#include <cstddef>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include <unfold/framework/checkpoint.hpp>
#include <unfold/framework/error.hpp>

namespace unfold
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

/// Token ids for characters, with three special tokens first: `<pad>` 0, `<s>` 1, `</s>` 2.
class vocabulary
{
public:
    static constexpr std::size_t pad = 0; ///< padding after the end of a shorter sequence
    static constexpr std::size_t bos = 1; ///< `<s>`, the start of a sequence
    static constexpr std::size_t eos = 2; ///< `</s>`, its end

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
        const std::unordered_set<std::string> distinct(chars.begin(), chars.end());
        std::vector<std::string> sorted(distinct.begin(), distinct.end());
        std::sort(sorted.begin(), sorted.end());
        return vocabulary(sorted);
    }

    /// The number of tokens, the specials included.
    std::size_t size() const { return m_symbols.size(); }
    /// True when the character `c` has an id.
    bool contains(const std::string& c) const { return m_ids.count(c) > 0; }
    /// The id of the character `c`; throws unfold::error when it has none.
    std::size_t id(const std::string& c) const
    {
        const auto found = m_ids.find(c);
        UNFOLD_CHECK(found != m_ids.end(), "the character '{}' is not in the vocabulary", c);
        return found->second;
    }
    /// The character (or special's name) of token `id`; throws std::out_of_range past the end.
    const std::string& symbol(std::size_t id) const { return m_symbols.at(id); }

    /// The ids of the characters of a UTF-8 string; throws unfold::error naming `what` (where the
    /// text comes from) and the first character that is not in the vocabulary.
    std::vector<std::size_t> encode(const std::string& text,
                                    const std::string& what = "text to encode") const
    {
        std::vector<std::size_t> out;
        for (const auto& c : utf8_chars(text, what))
        {
            UNFOLD_CHECK(contains(c), "{}: the character '{}' is not in the model's vocabulary",
                         what, c);
            out.push_back(id(c));
        }
        return out;
    }
    /// The characters of `ids`, stopping at `</s>`; `<s>` and `<pad>` are skipped.
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
    /// The vocabulary of a to_json() text; throws unfold::error when it is not one.
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
    std::unordered_map<std::string, std::size_t> m_ids;
};

} // namespace unfold
