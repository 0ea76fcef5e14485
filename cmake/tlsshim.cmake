# Flags for our own code: warnings as errors, and sanitizers taken from the
# environment (TLSSHIM_SANITIZE=address,undefined or thread) at configure time.

set(TLSSHIM_SANITIZE "$ENV{TLSSHIM_SANITIZE}" CACHE STRING
    "sanitizers for our code: address,undefined | thread | empty")

set(tlsshim_warnings -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
    -Wno-missing-field-initializers -Wno-format-truncation)
set(tlsshim_c_warnings ${tlsshim_warnings} -Wstrict-prototypes
    -Wmissing-prototypes)

set(tlsshim_sanitize_flags "")
if(TLSSHIM_SANITIZE)
  set(tlsshim_sanitize_flags -fsanitize=${TLSSHIM_SANITIZE}
      -fno-omit-frame-pointer -fno-sanitize-recover=all)
endif()

# Applies our warnings and sanitizer flags to target T.
function(tlsshim_target t)
  target_compile_options(${t} PRIVATE
    $<$<COMPILE_LANGUAGE:C>:${tlsshim_c_warnings}>
    $<$<COMPILE_LANGUAGE:CXX>:${tlsshim_warnings}>
    ${tlsshim_sanitize_flags})
  target_compile_definitions(${t} PRIVATE _GNU_SOURCE)
  if(tlsshim_sanitize_flags)
    target_link_options(${t} PRIVATE ${tlsshim_sanitize_flags})
  endif()
endfunction()
