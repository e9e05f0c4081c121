"""Int8 models after conversion: reading a .tflite (``model``), the TFLM runtime (``tflm``), accuracy in TFLM
(``evaluate``) and the firmware bundle (``bundle``)."""
