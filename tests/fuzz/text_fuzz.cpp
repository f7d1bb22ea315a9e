// libFuzzer target: the reader of `unfold train --text FILE` (models/text.hpp, text_corpus) on
// arbitrary bytes. Every input must either give a consistent corpus or throw unfold::error (not
// UTF-8, too short); anything else is a finding.
#include <cstdint>
#include <cstdlib>
#include <string>

#include <unfold/models/text.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    using unfold::text_corpus;
    const std::string bytes(reinterpret_cast<const char*>(data), size);
    try
    {
        const text_corpus c = text_corpus::parse(bytes, "<fuzz>");
        for (const auto* part : {&c.train, &c.valid})
            for (std::size_t id : *part)
                if (id >= c.vocab.size())
                    std::abort();
        // The characters, re-encoded, are the bytes again.
        std::string round;
        for (const auto* part : {&c.train, &c.valid})
            for (std::size_t id : *part)
                round += c.vocab.symbol(id);
        if (round != bytes)
            std::abort();
        const unfold::text_stream stream(c.train, 2, 8);
        for (std::size_t k = 0; k < stream.chunks(); ++k)
            (void)stream.chunk(k);
    }
    catch (const unfold::error&)
    {}
    return 0;
}
