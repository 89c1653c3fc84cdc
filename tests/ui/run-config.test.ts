// The run configuration's change list, link and file forms (pure functions, no browser).
import { describe, expect, it } from 'vitest';
import { ConfigFormatError, configFromHash, configFromJson, configToHash, configToJson, defaultConfig, diffConfigs, formatValue } from '../../src/ui/run-config';

describe('run configuration', () => {
  it('lists what changed, in the short form', () => {
    const a = defaultConfig();
    const b = defaultConfig();
    b.settings.lr = 1e-4;
    b.settings.lora.r = 16;
    b.settings.lora.targets = ['all-linear'];
    b.data.validationPercent = 5;
    expect(diffConfigs(a, b)).toEqual(['r 8→16', 'targets default→all-linear', 'lr 2e-4→1e-4', 'val 10→5']);
    expect(diffConfigs(a, defaultConfig())).toEqual([]);
    // LoRA fields do not count when a run is not LoRA.
    b.settings.method = 'full';
    expect(diffConfigs(a, b)).toEqual(['method lora→full', 'lr 2e-4→1e-4', 'val 10→5']);
  });

  it('formats numbers as a person writes them', () => {
    expect([2e-4, 1.5e-5, 1e-8, 0.001, 0.05, 16, 0.999].map(formatValue)).toEqual(['2e-4', '1.5e-5', '1e-8', '0.001', '0.05', '16', '0.999']);
  });

  it('round-trips through a link and a JSON file', () => {
    const c = defaultConfig();
    c.settings.method = 'partial';
    c.settings.trainableLayers = 3;
    c.settings.schedule = 'cosine';
    c.settings.lora.targets = ['q_proj', 'v_proj'];
    c.settings.shuffle = false;
    c.data.lossOn = 'all';
    const hash = configToHash(c);
    expect(hash).toMatch(/^#cfg&method=partial&/);
    expect(configFromHash(hash)).toEqual(c);
    expect(configFromJson(configToJson(c))).toEqual(c);
    expect(configFromHash('#something-else')).toBeNull();
    // Missing fields take defaults.
    expect(configFromHash('#cfg&lr=0.001')!.settings).toEqual({ ...defaultConfig().settings, lr: 0.001 });
  });

  it('refuses malformed values, naming the field', () => {
    expect(() => configFromHash('#cfg&batch=2.5')).toThrow(/batch must be a whole number/);
    expect(() => configFromHash('#cfg&method=dora')).toThrow(ConfigFormatError);
    expect(() => configFromJson('{"webtune": "run-config", "settings": {"lr": "fast"}}')).toThrow(/lr must be a number/);
    expect(() => configFromJson('{"r": 8}')).toThrow(/not a webtune run configuration/);
    expect(() => configFromJson('{')).toThrow(/not JSON/);
  });
});
