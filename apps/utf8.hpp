#pragma once
/// UTF-8 text as characters: the decoding every reader of prompts and text files shares.

#include <cstddef>
#include <string>
#include <vector>

#include <unfold/framework/checkpoint.hpp>
#include <unfold/framework/error.hpp>

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

} // namespace unfold::app
