#pragma once
/// The character vocabulary of the app's models: token ids for characters after three special
/// tokens, and its JSON form in checkpoint metadata.

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <unfold/framework/error.hpp>

#include "apps/utf8.hpp"

namespace unfold::app
{

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

} // namespace unfold::app
