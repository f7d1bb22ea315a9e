#pragma once
/// Character-level language modelling of any UTF-8 text file (`unfold train --text FILE`, or a
/// training loop of your own over any cell): reading the file, its corpus (vocabulary and 90/10
/// split: training text and held-out text) and the parallel streams of truncated BPTT, whose
/// chunks a stateful model reads one after another, carrying its state.

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <unfold/framework/error.hpp>
#include <unfold/models/decoder.hpp>
#include <unfold/models/vocabulary.hpp>

namespace unfold
{

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
    vocabulary vocab;               ///< every character of the file
    std::vector<std::size_t> train; ///< the first 90% of the characters, as ids
    std::vector<std::size_t> valid; ///< the last 10%, held out

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
    /// Streams over `text` (which must outlive this); throws unfold::error when a stream would
    /// not hold one chunk.
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

} // namespace unfold
