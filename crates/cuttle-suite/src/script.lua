-- cuttle's sandbox for teuthology's fragment scripts (premerge and postmerge).
--
-- Loaded once per Lua state; returns the functions the Rust side calls. Scripts see
-- only what teuthology's allowlist gives them, plus the py_* helpers rebuilt on Lua
-- tables: mappings carry the DICT metatable and iterate in sorted key order, lists the
-- LIST metatable, so a script gives the same answer on every run.

local pcall = pcall
local setmetatable, getmetatable, type, pairs, ipairs, next, load, rawlen, error, tostring, select =
  setmetatable, getmetatable, type, pairs, ipairs, next, load, rawlen, error, tostring, select
local sort, concat = table.sort, table.concat

local LIST, DICT = {}, {}

local function key_before(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function sorted_keys(t)
  local keys = {}
  for k in next, t do keys[#keys + 1] = k end
  sort(keys, key_before)
  return keys
end

DICT.__pairs = function(t)
  local keys, i = sorted_keys(t), 0
  return function()
    i = i + 1
    local k = keys[i]
    if k ~= nil then return k, t[k] end
  end, t, nil
end

local function is_list(t)
  local mt = getmetatable(t)
  if mt == LIST then return true end
  if mt == DICT then return false end
  return t[1] ~= nil
end

local function py_list(from)
  local list = setmetatable({}, LIST)
  if type(from) == "table" then
    for i = 1, #from do list[i] = from[i] end
  end
  return list
end

local function py_dict(from)
  local dict = setmetatable({}, DICT)
  if type(from) == "table" then
    for k, v in pairs(from) do dict[k] = v end
  end
  return dict
end

local function py_len(t)
  if type(t) == "string" then return #t end
  if is_list(t) then return rawlen(t) end
  local n = 0
  for _ in next, t do n = n + 1 end
  return n
end

-- Python's enumerate: (0-based index, item) for a list, (index, key) for a mapping.
local function py_enumerate(t)
  local items
  if is_list(t) then
    items = t
  else
    items = sorted_keys(t)
  end
  local i = 0
  return function()
    i = i + 1
    local v = items[i]
    if v ~= nil then return i - 1, v end
  end
end

local function deep_merge(a, b)
  if b == nil then return a end
  if a == nil then
    if type(b) ~= "table" then return b end
    a = is_list(b) and py_list() or py_dict()
  end
  if type(a) == "table" and is_list(a) then
    if type(b) ~= "table" or not is_list(b) then error("deep_merge: only a list merges into a list", 2) end
    for i = 1, rawlen(b) do a[#a + 1] = b[i] end
    return a
  end
  if type(a) == "table" then
    if type(b) ~= "table" or is_list(b) then error("deep_merge: only a mapping merges into a mapping", 2) end
    for k, v in pairs(b) do a[k] = deep_merge(a[k], v) end
    return a
  end
  return b
end

-- The methods scripts reach through py_attrgetter (lupa's attribute access).
local function py_attrgetter(t)
  local methods = {}
  function methods.append(v) t[#t + 1] = v end
  function methods.extend(more) for i = 1, #more do t[#t + 1] = more[i] end end
  function methods.insert(i, v) table.insert(t, i + 1, v) end
  function methods.pop(k, default)
    if is_list(t) then
      local i = k == nil and #t or k + 1
      return table.remove(t, i)
    end
    local v = t[k]
    if v == nil then return default end
    t[k] = nil
    return v
  end
  function methods.get(k, default)
    local v = t[k]
    if v == nil then return default end
    return v
  end
  function methods.keys() return py_list(sorted_keys(t)) end
  function methods.values()
    local out = py_list()
    for _, k in ipairs(sorted_keys(t)) do out[#out + 1] = t[k] end
    return out
  end
  function methods.items()
    local out = py_list()
    for _, k in ipairs(sorted_keys(t)) do out[#out + 1] = py_list({ k, t[k] }) end
    return out
  end
  function methods.update(more) for k, v in pairs(more) do t[k] = v end end
  function methods.setdefault(k, v)
    if t[k] == nil then t[k] = v end
    return t[k]
  end
  function methods.copy() return is_list(t) and py_list(t) or py_dict(t) end
  function methods.count(v)
    local n = 0
    for i = 1, #t do if t[i] == v then n = n + 1 end end
    return n
  end
  function methods.index(v)
    for i = 1, #t do if t[i] == v then return i - 1 end end
    error("value not in list", 2)
  end
  return methods
end

local function py_itemgetter(t) return t end

local function silent() end
local log = { debug = silent, info = silent, warning = silent, warn = silent, error = silent }

-- accept() and reject() end the script from anywhere, nested calls included: they
-- raise one of these markers, which only `run` catches (scripts have no pcall). The
-- script runs on the calling thread, where the instruction limit is hooked.
local ACCEPTED, REJECTED = {}, {}
local function accept() error(ACCEPTED, 0) end
local function reject() error(REJECTED, 0) end

-- The libraries scripts get are read-only views: one script cannot change what the
-- next one (or the filters) call.
local function read_only(library, name)
  return setmetatable({}, {
    __index = library,
    __newindex = function() error(name .. " is read-only in a fragment script", 2) end,
    __metatable = false,
  })
end

local allowed = {
  assert = assert,
  error = error,
  ipairs = ipairs,
  next = next,
  pairs = pairs,
  tonumber = tonumber,
  tostring = tostring,
  py_attrgetter = py_attrgetter,
  py_dict = py_dict,
  py_len = py_len,
  py_list = py_list,
  py_tuple = py_list,
  py_enumerate = py_enumerate,
  py_itemgetter = py_itemgetter,
  math = read_only(math, "math"),
  string = read_only(string, "string"),
}
allowed.__index = allowed

local yaml_load -- set by the host

-- Runs one script. `globals` holds what the script sees besides the allowlist; the
-- answer is Python's truth of what the script returned, or accept()/reject().
local function run(source, chunkname, globals)
  local env = setmetatable({
    accept = accept,
    reject = reject,
    deep_merge = deep_merge,
    log = log,
    yaml_load = yaml_load,
  }, allowed)
  for k, v in next, globals do env[k] = v end
  local body, message = load(
    "local function main() do " .. source .. "\n end return true end return main()",
    chunkname, "t", env)
  if body == nil then error(message, 0) end
  local ok, verdict = pcall(body)
  if not ok then
    if verdict == ACCEPTED then return true end
    if verdict == REJECTED then return false end
    error(verdict, 0)
  end
  if verdict == nil or verdict == false or verdict == 0 or verdict == "" then return false end
  return true
end

local function set_yaml_load(f) yaml_load = f end

local function find(text, pattern) return text:find(pattern) ~= nil end

return {
  run = run,
  list = py_list,
  dict = py_dict,
  is_list = is_list,
  set_yaml_load = set_yaml_load,
  find = find,
  LIST = LIST,
  DICT = DICT,
}
